"""Hyperlane's dive figures against the real dive 0.13.1, on images the engines build.

Both tools read the same `save` archive. dive's `--json` export stores the
efficiency as a float64, which must match exactly, and the wasted bytes. Its
`--ci` output prints the efficiency and the user wasted percent with four
decimals, which must match after the same rounding.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from hyperlane.images import ImageAnalysis, analyze_archive
from hyperlane.images.efficiency import INEFFICIENT_FILES_LISTED, DiveEfficiency
from tests.conftest import unique_name
from tests.integration.images.conftest import PACKAGE
from tests.integration.images.test_engine_archives import (
    _export_regular_bytes,
    _layer_regular_bytes,
)
from tests.unit.images.builders import (
    Entry,
    SparseFile,
    detailed_archive,
    directory,
    docker_archive,
    file,
    hardlink,
    layer_tar,
    symlink,
)

pytestmark = pytest.mark.integration

# The first RUN writes one file per case, the second rewrites, deletes, chmods and
# recreates them. Sizes: gone.bin 65536, over.txt 6 then 18, dir/one 4 and
# dir/two 8, mode.bin 3000 twice, cache/old 4, cache/new 4.
BUSYBOX_CONTAINERFILE = """\
FROM {base}
RUN mkdir -p /data/dir /data/cache \
 && dd if=/dev/zero of=/data/gone.bin bs=1024 count=64 \
 && echo first > /data/over.txt && echo one > /data/dir/one \
 && echo two-two > /data/dir/two && dd if=/dev/zero of=/data/mode.bin bs=1000 count=3 \
 && echo old > /data/cache/old
RUN echo second-and-longer > /data/over.txt && rm /data/gone.bin && rm -rf /data/dir \
 && chmod 600 /data/mode.bin && rm -rf /data/cache && mkdir /data/cache \
 && echo new > /data/cache/new
"""
GONE_BYTES = 64 * 1024
OVER_BYTES = (len("first\n"), len("second-and-longer\n"))
DIR_BYTES = len("one\n") + len("two-two\n")
MODE_BYTES = 3000
CACHE_OLD_BYTES = len("old\n")

_CI_FIGURES = {
    "efficiency": re.compile(r"^\s*efficiency: (\S+) %$", re.MULTILINE),
    "wasted_bytes": re.compile(r"^\s*wastedBytes: (\d+) bytes", re.MULTILINE),
    "user_wasted_percent": re.compile(r"^\s*userWastedPercent: (\S+) %$", re.MULTILINE),
}


@dataclass(frozen=True)
class DiveRun:
    """What the real dive reports for one archive."""

    # The "image" object of the --json export.
    image: dict[str, Any]
    # sizeBytes of each layer of the --json export, bottom first.
    layer_sizes_bytes: list[int]
    # The --ci output's figures as printed: "%2.4f" percentages and a byte count.
    ci: dict[str, str]


def run_dive(dive: Path, archive: Path, work: Path) -> DiveRun:
    """Run dive --json and dive --ci on ARCHIVE, with WORK as home and directory."""
    work.mkdir(parents=True, exist_ok=True)
    # dive reads ~/.dive.yaml and ./.dive-ci, so its home and working directory are
    # WORK, which has neither.
    environment = {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work)}
    source = ["--source", "docker-archive", str(archive)]

    export = work / "dive.json"
    subprocess.run(
        [str(dive), "--json", str(export), *source],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=work,
        env=environment,
    )

    # Every rule off, so the exit code is 0 and only the figures matter.
    rules = [
        "--lowestEfficiency=disabled",
        "--highestWastedBytes=disabled",
        "--highestUserWastedPercent=disabled",
    ]
    ci = subprocess.run(
        [str(dive), "--ci", *rules, *source],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=work,
        env=environment,
    )
    figures = {}
    for name, pattern in _CI_FIGURES.items():
        match = pattern.search(ci.stdout)
        assert match is not None, f"dive --ci printed no {name}:\n{ci.stdout}"
        figures[name] = match[1]

    document = json.loads(export.read_text())
    return DiveRun(
        image=document["image"],
        layer_sizes_bytes=[layer["sizeBytes"] for layer in document["layer"]],
        ci=figures,
    )


def dive_listing(run: DiveRun) -> list[tuple[str, int, int]]:
    """Return dive's inefficient paths in Hyperlane's order, largest first, top 20.

    dive sorts them with Go's unstable sort, so equal sizes are re-sorted by path.
    """
    references = [
        (item["file"], item["count"], item["sizeBytes"])
        for item in run.image["fileReference"]
    ]
    references.sort(key=lambda item: (-item[2], item[0].encode()))
    return references[:INEFFICIENT_FILES_LISTED]


def listing(dive: DiveEfficiency) -> list[tuple[str, int, int]]:
    return [
        (item.path, item.count, item.cumulative_bytes)
        for item in dive.inefficient_files
    ]


def dive_entry(run: DiveRun, path: str) -> tuple[int, int] | None:
    """Return the count and bytes that dive lists for PATH, or None if unlisted."""
    for item in run.image["fileReference"]:
        if item["file"] == path:
            return item["count"], item["sizeBytes"]
    return None


def assert_matches_dive(result: ImageAnalysis, run: DiveRun) -> None:
    """Assert that every dive figure of RESULT equals what dive itself reported."""
    dive = result.dive
    assert dive.efficiency == run.image["efficiencyScore"]
    assert f"{dive.efficiency * 100:.4f}" == run.ci["efficiency"]
    assert dive.wasted_bytes == run.image["inefficientBytes"]
    assert str(dive.wasted_bytes) == run.ci["wasted_bytes"]
    if dive.user_wasted_percent is None:
        # Go divides by zero user bytes: 0/0 is NaN, anything else +Inf.
        assert run.ci["user_wasted_percent"] in {"NaN", "+Inf"}
    else:
        assert f"{dive.user_wasted_percent:.4f}" == run.ci["user_wasted_percent"]
    assert dive.size_bytes == run.image["sizeBytes"]
    assert dive.user_size_bytes == sum(run.layer_sizes_bytes[1:])
    assert dive.inefficient_file_count == len(run.image["fileReference"])
    assert listing(dive) == dive_listing(run)
    # dive's layer size is the sum of the tar header sizes, which equals the
    # regular-file bytes with every hard-linked file once.
    assert [
        layer.regular_file_bytes for layer in result.layers
    ] == run.layer_sizes_bytes


def _context(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text.encode())
        archive.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def _save(client: docker.DockerClient, tag: str, path: Path) -> Path:
    with path.open("wb") as output:
        for chunk in client.images.get(tag).save(named=True):
            output.write(chunk)
    return path


@pytest.fixture(scope="module")
def busybox_archive(
    engine_client: docker.DockerClient,
    busybox_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """docker-archive of the wasteful busybox image, which is removed afterwards."""
    tag = f"localhost/{unique_name('hyperlane-dive')}:latest"
    # No build step needs a network, so the RUN containers get none.
    engine_client.images.build(
        fileobj=io.BytesIO(_context(BUSYBOX_CONTAINERFILE.format(base=busybox_image))),
        custom_context=True,
        dockerfile="Containerfile",
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="none",
    )
    try:
        yield _save(
            engine_client, tag, tmp_path_factory.mktemp("busybox") / "image.tar"
        )
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            engine_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def busybox_dive(
    dive_binary: Path, busybox_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> DiveRun:
    return run_dive(dive_binary, busybox_archive, tmp_path_factory.mktemp("dive"))


@pytest.fixture(scope="module")
def busybox_result(busybox_archive: Path) -> ImageAnalysis:
    return analyze_archive(busybox_archive)


@pytest.fixture(scope="module")
def debian_archive(
    engine_client: docker.DockerClient,
    debian_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    return _save(
        engine_client, debian_image, tmp_path_factory.mktemp("debian") / "image.tar"
    )


@pytest.fixture(scope="module")
def debian_dive(
    dive_binary: Path, debian_archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> DiveRun:
    return run_dive(dive_binary, debian_archive, tmp_path_factory.mktemp("dive"))


@pytest.fixture(scope="module")
def debian_result(debian_archive: Path) -> ImageAnalysis:
    return analyze_archive(debian_archive)


def test_busybox_matches_dive(
    busybox_result: ImageAnalysis, busybox_dive: DiveRun
) -> None:
    assert_matches_dive(busybox_result, busybox_dive)


def test_debian_matches_dive(
    debian_result: ImageAnalysis, debian_dive: DiveRun
) -> None:
    assert_matches_dive(debian_result, debian_dive)


def test_busybox_rewritten_file_counts_both_copies(
    busybox_result: ImageAnalysis, busybox_dive: DiveRun
) -> None:
    # dive counts the 6-byte copy and the 18-byte one that stays visible. Hidden
    # bytes count the 6-byte copy only (see the totals test).
    assert dive_entry(busybox_dive, "/data/over.txt") == (2, sum(OVER_BYTES))
    assert ("/data/over.txt", 2, 24) in listing(busybox_result.dive)


def test_busybox_deleted_file_counted_by_both(busybox_dive: DiveRun) -> None:
    # The whiteout adds 0 bytes, so dive's figure is the deleted copy, as ours is.
    assert dive_entry(busybox_dive, "/data/gone.bin") == (2, GONE_BYTES)


def test_busybox_chmod_counts_twice(busybox_dive: DiveRun) -> None:
    # The engine copies the whole file up to change its mode. dive counts both
    # copies, hidden bytes the lower one.
    assert dive_entry(busybox_dive, "/data/mode.bin") == (2, 2 * MODE_BYTES)


def test_busybox_deleted_directory_not_in_dive(busybox_dive: DiveRun) -> None:
    # /data/dir has children in the writing layer, so only the whiteout visits
    # it: one visit, never inefficient, though its 12 bytes are hidden.
    for path in ("/data/dir", "/data/dir/one", "/data/dir/two"):
        assert dive_entry(busybox_dive, path) is None


def test_busybox_opaque_directory_not_in_dive(busybox_dive: DiveRun) -> None:
    # dive ignores the opaque marker, so cache/old counts once and is not waste.
    for path in ("/data/cache", "/data/cache/old", "/data/cache/new"):
        assert dive_entry(busybox_dive, path) is None


def test_busybox_hidden_and_wasted_totals(
    busybox_result: ImageAnalysis, busybox_dive: DiveRun
) -> None:
    hidden_bytes = OVER_BYTES[0] + GONE_BYTES + MODE_BYTES + DIR_BYTES + CACHE_OLD_BYTES
    wasted_bytes = sum(OVER_BYTES) + GONE_BYTES + 2 * MODE_BYTES
    assert busybox_result.hidden_bytes == hidden_bytes
    assert busybox_dive.image["inefficientBytes"] == wasted_bytes
    # Visible copies count in dive only, deleted directories and opaque
    # directories in hidden bytes only.
    difference = OVER_BYTES[1] + MODE_BYTES - DIR_BYTES - CACHE_OLD_BYTES
    assert busybox_result.dive.wasted_bytes - busybox_result.hidden_bytes == difference


def _layer_members(archive_path: Path) -> list[dict[str, tarfile.TarInfo]]:
    """Return the members of each layer tar of a docker-archive, by normalised name."""
    layers = []
    with tarfile.open(archive_path) as archive:
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        for layer_name in json.load(manifest_file)[0]["Layers"]:
            layer_file = archive.extractfile(layer_name)
            assert layer_file is not None
            with tarfile.open(fileobj=layer_file, mode="r|") as layer:
                layers.append(
                    {member.name.removeprefix("./"): member for member in layer}
                )
    return layers


def _regular_bytes_under(
    layers: list[dict[str, tarfile.TarInfo]], parent: str, below: int
) -> int:
    """Sum the regular files under PARENT in the layers below index BELOW."""
    return sum(
        member.size
        for members in layers[:below]
        for name, member in members.items()
        if member.isreg() and name.startswith(parent + "/")
    )


def _layer_with(layers: list[dict[str, tarfile.TarInfo]], name: str) -> int:
    """Return the index of the only layer that has member NAME."""
    found = [index for index, members in enumerate(layers) if name in members]
    assert len(found) == 1, f"{name} is in layers {found}"
    return found[0]


def test_debian_hidden_bytes_match_export(
    engine_client: docker.DockerClient,
    debian_image: str,
    debian_archive: Path,
    debian_result: ImageAnalysis,
    reap: list[Container],
) -> None:
    # Regular-file bytes of every saved layer, minus those of the engine's export
    # of a container, so neither side reads Hyperlane's stacking.
    shipped = _layer_regular_bytes(debian_archive)
    visible = _export_regular_bytes(engine_client, debian_image, reap)
    assert debian_result.hidden_bytes == shipped - visible
    assert debian_result.visible_bytes == visible


def test_debian_waste_cases(
    debian_archive: Path, debian_result: ImageAnalysis, debian_dive: DiveRun
) -> None:
    """Split hidden bytes and dive's wasted bytes into the cases that differ."""
    layers = _layer_members(debian_archive)
    final = layers[-1]
    # The last layer deletes the package's docs and recreates /var/cache/debconf.
    assert "usr/share/doc/.wh.less" in final
    assert "var/cache/debconf/.wh..wh..opq" in final
    docs_bytes = _regular_bytes_under(
        layers, f"usr/share/doc/{PACKAGE}", len(layers) - 1
    )
    debconf_bytes = _regular_bytes_under(layers, "var/cache/debconf", len(layers) - 1)
    assert docs_bytes > 0
    assert debconf_bytes > 0
    for item in debian_dive.image["fileReference"]:
        assert not item["file"].startswith(f"/usr/share/doc/{PACKAGE}")
        assert not item["file"].startswith("/var/cache/debconf/")

    # Every other path that dive lists with bytes is a file that dpkg rewrote and
    # that stays visible: dive counts each copy, hidden bytes all but the last.
    rewritten = [
        item for item in debian_dive.image["fileReference"] if item["sizeBytes"]
    ]
    assert {"/var/lib/dpkg/status", "/var/log/dpkg.log"} <= {
        item["file"] for item in rewritten
    }
    visible_copy_bytes = 0
    for item in rewritten:
        name = item["file"].lstrip("/")
        copies = [members[name].size for members in layers if name in members]
        assert len(copies) == item["count"]
        assert sum(copies) == item["sizeBytes"]
        visible_copy_bytes += copies[-1]
    wasted_bytes = sum(item["sizeBytes"] for item in rewritten)

    assert debian_dive.image["inefficientBytes"] == wasted_bytes
    assert debian_result.hidden_bytes == (
        wasted_bytes - visible_copy_bytes + docs_bytes + debconf_bytes
    )
    # The deleted docs are the only bytes of the install layer that get hidden.
    install = _layer_with(layers, "var/lib/dpkg/info/less.list")
    assert debian_result.layers[install].hidden_bytes == docs_bytes


def _whiteout(name: str) -> Entry:
    parent, _, base = name.rpartition("/")
    return file(f"{parent}/.wh.{base}".lstrip("/"), b"")


def _opaque(parent: str) -> Entry:
    return file(f"{parent}/.wh..wh..opq", b"")


# Layer sets whose dive figures depend on a rule of dive's own stacking.
HAND_BUILT: dict[str, list[list[Entry | SparseFile]]] = {
    "rewrite": [[file("a/f", b"x" * 100)], [file("a/f", b"y" * 30)]],
    "deleted-directory": [
        [directory("d"), file("d/x", b"1" * 5), file("d/sub/y", b"2" * 7)],
        [_whiteout("d")],
    ],
    "deleted-empty-directory": [
        [directory("d")],
        [directory("d"), file("d/f", b"x" * 60)],
        [_whiteout("d")],
    ],
    "implied-directory": [
        [directory("d"), directory("d/e"), file("d/e/f", b"x" * 60)],
        [file("d/e/g", b"y" * 5)],
        [_whiteout("d"), file("d2", b"k")],
        [file("d", b"n" * 9)],
    ],
    "opaque": [
        [directory("d"), file("d/f", b"x" * 100), file("d/h", b"h" * 4)],
        [directory("d"), _opaque("d"), file("d/g", b"y" * 7), file("d/h", b"i" * 2)],
    ],
    "hard-links": [
        [file("a", b"x" * 40), hardlink("b", "a")],
        [file("a", b"z" * 40)],
        [file("b", b"q" * 8)],
    ],
    "aborted-layer": [
        [file("b", b"x" * 10)],
        [_whiteout("zz"), file("b", b"y" * 3), file("zzz", b"q" * 5)],
    ],
    "whiteout-sorted-last": [
        [directory("-a"), file("-a/f", b"x" * 20), file("k", b"k" * 5)],
        [_whiteout("-a"), directory("-a"), file("-a/g", b"y" * 3)],
        [_whiteout("-a"), file("k", b"m" * 6)],
    ],
    "sparse": [
        [SparseFile("s", 1 << 20, ((0, b"head"), (1 << 19, b"tail")))],
        [SparseFile("s", 1 << 21, ((0, b"head"),))],
    ],
    "empty-directories": [[directory("tmp"), file("x", b"1")], [directory("tmp")]],
    "worked-example": [
        [
            directory("app"),
            file("app/conf", b"c" * 100),
            directory("app/data"),
            file("app/data/a", b"a" * 500),
            file("app/data/b", b"b" * 300),
            file("app/log", b"l" * 40),
        ],
        [directory("app"), file("app/conf", b"C" * 120), _whiteout("app/log")],
        [directory("app"), _whiteout("app/data"), directory("app/cache")],
    ],
    "no-layers": [],
}


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built_matches_dive(dive_binary: Path, tmp_path: Path, name: str) -> None:
    archive = detailed_archive(tmp_path / "image.tar", HAND_BUILT[name])
    run = run_dive(dive_binary, archive, tmp_path / "dive")
    assert_matches_dive(analyze_archive(archive), run)


def test_pax_global_header_rejected_by_dive(dive_binary: Path, tmp_path: Path) -> None:
    # git archive writes such a header first. dive 0.13.1 stops on it, while
    # Hyperlane reads past it and still computes dive's figures.
    layer = layer_tar([file("a", b"x" * 3)], global_headers={"comment": "abc"})
    archive = docker_archive(tmp_path / "image.tar", [layer])
    export = tmp_path / "dive.json"
    source = ["--source", "docker-archive", str(archive)]
    run = subprocess.run(
        [str(dive_binary), "--json", str(export), *source],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 1
    assert "XGlobalHeader" in run.stdout + run.stderr
    assert analyze_archive(archive).dive.size_bytes == 3


_RANDOM_PATHS = ("a", "b", "-a", "d", "d/e", "d/f", "d/e/g", "x/y/z", "d/-e", "tmp")


def _random_layers(generator: random.Random) -> list[list[Entry | SparseFile]]:
    """Return up to 4 layers of files, directories, whiteouts, opaque markers and links.

    Whiteouts may name paths that no lower layer has.
    """
    layers: list[list[Entry | SparseFile]] = []
    for _ in range(generator.randint(1, 4)):
        entries: list[Entry | SparseFile] = []
        for _ in range(generator.randint(0, 7)):
            path = generator.choice(_RANDOM_PATHS)
            draw = generator.random()
            if draw < 0.35:
                entries.append(file(path, b"x" * generator.randint(0, 50)))
            elif draw < 0.5:
                entries.append(directory(path))
            elif draw < 0.7:
                entries.append(_whiteout(path))
            elif draw < 0.8:
                entries.append(_opaque(path.rpartition("/")[0]))
            elif draw < 0.9:
                # The target has a name that no other entry touches, so it resolves.
                target = f"link-target-{len(entries)}"
                entries.append(file(target, b"t" * generator.randint(0, 20)))
                entries.append(hardlink(path, target))
            else:
                entries.append(symlink(path, "target"))
        layers.append(entries)
    return layers


def test_random_layers_match_dive(dive_binary: Path, tmp_path: Path) -> None:
    generator = random.Random(20250520)
    for index in range(60):
        layers = _random_layers(generator)
        archive = detailed_archive(tmp_path / f"image-{index}.tar", layers)
        run = run_dive(dive_binary, archive, tmp_path / f"dive-{index}")
        assert_matches_dive(analyze_archive(archive), run)
