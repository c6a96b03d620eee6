"""Debian root file systems from debootstrap, cached per machine, as engine images.

debootstrap writes a root file system once per machine and recipe. Its tarball stays
in CACHE_DIR ($HYPERLANE_TEST_CACHE, else /var/tmp/hyperlane-test-cache) under a name
keyed by the recipe, beside the tarball's SHA-256, so later sessions skip
debootstrap. Each engine imports a tarball as a base image labelled with that hash,
and images built on it carry the hash of their own inputs, so that a later session
reuses them instead of rebuilding.
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
import tempfile
from collections.abc import Iterator, Sequence
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
DEBOOTSTRAP_TIMEOUT_SECONDS = 900
# debootstrap copies these from the host, and the engines mount their own over them,
# so the tarball leaves them out.
HOST_COPIES = ("./etc/hostname", "./etc/resolv.conf")
RECIPE_LABEL = "io.hyperlane.test.recipe-sha256"


@dataclass(frozen=True)
class RootFileSystem:
    """A cached debootstrap tarball and the SHA-256 of its bytes."""

    path: Path
    sha256: str


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Hold an exclusive lock on CACHE_DIR, so parallel sessions build once."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_checked(
    command: list[str], timeout_seconds: float, cwd: Path | None = None
) -> None:
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


def _debootstrap_into(tarball: Path, arguments: Sequence[str]) -> None:
    """Run debootstrap in a temporary directory and write its root to TARBALL."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        pytest.fail("debootstrap is missing; run scripts/setup.sh")
    if os.geteuid() != 0:
        pytest.fail("debootstrap needs root; run the integration tests as root")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        root = Path(work) / "root"
        run_checked(
            [debootstrap, *arguments, DEBIAN_SUITE, str(root), DEBIAN_MIRROR],
            DEBOOTSTRAP_TIMEOUT_SECONDS,
        )
        partial = Path(work) / "root.tar"
        excludes = [f"--exclude={path}" for path in HOST_COPIES]
        run_checked(
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


def debootstrap_rootfs(name: str, arguments: Sequence[str]) -> RootFileSystem:
    """Return the cached tarball of `debootstrap ARGUMENTS`, building it if missing.

    NAME names the tarball, e.g. "minbase"; the recipe's hash keys it.
    """
    recipe = json.dumps(
        [[*arguments, DEBIAN_SUITE], DEBIAN_MIRROR, HOST_COPIES]
    ).encode()
    key = hashlib.sha256(recipe).hexdigest()[:16]
    tarball = CACHE_DIR / f"debian-{DEBIAN_SUITE}-{name}-{key}.tar"
    checksum = tarball.with_name(tarball.name + ".sha256")
    with cache_lock():
        if not (tarball.is_file() and checksum.is_file()):
            checksum.unlink(missing_ok=True)
            _debootstrap_into(tarball, arguments)
            checksum.write_text(sha256_file(tarball) + "\n")
    return RootFileSystem(tarball, checksum.read_text().strip())


def labelled_image(client: docker.DockerClient, tag: str, recipe: str) -> bool:
    """Return whether TAG exists in the engine with RECIPE in its label."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return bool(image.labels.get(RECIPE_LABEL) == recipe)


def remove_other_tags(client: docker.DockerClient, keep: str) -> None:
    """Remove the images of KEEP's repository that an older recipe tagged."""
    repository = keep.rsplit(":", 1)[0]
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag.startswith(repository + ":") and tag != keep:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


def import_rootfs(
    client: docker.DockerClient, rootfs: RootFileSystem, tag: str
) -> None:
    """Import ROOTFS as image TAG, labelled with the tarball's hash."""
    with rootfs.path.open("rb") as reader:
        output = client.api.import_image(
            src=reader, changes=[f"LABEL {RECIPE_LABEL}={rootfs.sha256}"]
        )
    # Podman's compatible API ignores the repository and tag of an import, so the
    # image is tagged by the id from the last status line.
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    image_id = lines[-1]["status"]
    client.images.get(image_id).tag(*tag.rsplit(":", 1))


def base_image(
    client: docker.DockerClient, rootfs: RootFileSystem, repository: str
) -> str:
    """Return the tag of ROOTFS imported into the engine, importing it when missing.

    The caller holds cache_lock().
    """
    tag = f"{repository}:{rootfs.sha256[:12]}"
    if not labelled_image(client, tag, rootfs.sha256):
        import_rootfs(client, rootfs, tag)
    return tag


def build_labelled_image(
    client: docker.DockerClient, context: bytes, repository: str, recipe: str
) -> str:
    """Build the tar CONTEXT as REPOSITORY:RECIPE[:12] unless that image exists.

    RECIPE is the hash of every input, kept in the image's label. Images of the
    repository with other tags are removed. The caller holds cache_lock().
    """
    tag = f"{repository}:{recipe[:12]}"
    if not labelled_image(client, tag, recipe):
        # No step needs a network, so the build containers get none.
        client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            dockerfile="Containerfile",
            tag=tag,
            labels={RECIPE_LABEL: recipe},
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    remove_other_tags(client, tag)
    return tag
