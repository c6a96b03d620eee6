"""One adapter over the Docker Engine API, which Docker and Podman both serve."""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.images import Image

from hyperlane.errors import (
    EngineUnavailable,
    ImageInvalid,
    ServiceNotReady,
    UsageError,
)

logger = logging.getLogger(__name__)

# The reference grammar of the distribution project's reference package, which both
# engines follow: [domain[:port]/]path[:tag][@algorithm:digest], lowercase path
# components. A first component is a domain only when it is localhost or contains a
# "." or ":". An image id or a unique prefix of one is accepted too.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
)
_REFERENCE = re.compile(
    rf"^(?:(?:localhost|(?=[^/]*[.:]){_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,})?$"
)
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")


def validate_reference(reference: str) -> None:
    """Raise UsageError unless ``reference`` is a well-formed image reference or id."""
    if len(reference) <= 255 and (
        _REFERENCE.match(reference) or _IMAGE_ID.match(reference)
    ):
        return
    raise UsageError(
        f"invalid image reference {reference!r}: use [registry/]name[:tag][@digest] "
        "with a lowercase name, such as localhost/app:1.0, or an image id"
    )


# Labels let a later run, or a person, find containers that Hyperlane started.
CONTAINER_LABEL = "io.hyperlane.owner"
# The process id of the hyperlane command that created a container, so that a
# clean-up can tell a live command's containers from those a killed one left.
PROCESS_LABEL = "io.hyperlane.pid"


@dataclass(frozen=True)
class EngineInfo:
    """The engine that responded, as its version endpoint reports it."""

    name: str
    """``docker`` or ``podman``."""
    version: str
    api_version: str
    base_url: str
    local: bool
    """True when the engine runs on this host, so its cgroup files can be read here."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine:
    """A connected container engine: build, export, run and remove through its API."""

    def __init__(self, client: docker.DockerClient, info: EngineInfo) -> None:
        self.client = client
        self.info = info

    def close(self) -> None:
        self.client.close()

    def build(
        self,
        context_dir: Path,
        dockerfile: str,
        tag: str,
        extra_files: dict[str, Path] | None = None,
    ) -> Image:
        """Build an image from a directory, adding ``extra_files`` to the context.

        The context is sent as an uncompressed tar, so files outside the directory, such
        as a host binary, can join it without being copied into the source tree.
        """
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            archive.add(context_dir.resolve(), arcname=".")
            for name, source in (extra_files or {}).items():
                archive.add(source, arcname=name)
        context.seek(0)
        logger.info("building %s from %s", tag, context_dir)
        try:
            image, _ = self.client.images.build(
                fileobj=context,
                custom_context=True,
                dockerfile=dockerfile,
                tag=tag,
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as error:
            log_tail = " ".join(
                str(line.get("stream", line.get("error", ""))).strip()
                for line in list(error.build_log)[-5:]
            )
            raise ImageInvalid(
                f"building {tag!r} from {str(context_dir)!r} failed: {error.msg}. "
                f"Last build output: {log_tail}"
            ) from None
        except docker.errors.APIError as error:
            raise EngineUnavailable(
                f"the {self.info.name} engine rejected the build of {tag!r}: {error}"
            ) from None
        return image

    def get_image(self, reference: str) -> Image:
        """Return the engine's image ``reference``.

        Raises UsageError for a malformed reference and ImageInvalid when the engine
        has no such image.
        """
        validate_reference(reference)
        try:
            return self.client.images.get(reference)
        except docker.errors.ImageNotFound:
            raise ImageInvalid(
                f"image {reference!r} not found in the {self.info.name} engine at "
                f"{self.info.base_url}; build it, or load its archive with docker "
                "load or podman load, then try again (no registry is contacted)"
            ) from None
        except docker.errors.APIError as error:
            # Docker returns 400 for a malformed reference, Podman 4.3 returns 500.
            if error.status_code == 400 or "invalid reference format" in str(
                error.explanation
            ):
                raise UsageError(
                    f"invalid image reference {reference!r}: the {self.info.name} "
                    f"engine rejected it ({error.explanation}); use "
                    "[registry/]name[:tag][@digest], such as localhost/app:1.0"
                ) from None
            raise EngineUnavailable(
                f"the {self.info.name} engine failed to look up image "
                f"{reference!r}: {error.explanation or error}"
            ) from None

    def export_image(
        self,
        image: Image,
        destination: Path,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Write the engine's ``docker save`` archive of ``image`` to ``destination``.

        ``progress`` receives the bytes written so far.
        """
        written_bytes = 0
        try:
            chunks: Iterator[bytes] = image.save(named=True)
            with destination.open("wb") as output:
                for chunk in chunks:
                    output.write(chunk)
                    written_bytes += len(chunk)
                    if progress is not None:
                        progress(written_bytes)
        except docker.errors.APIError as error:
            raise EngineUnavailable(
                f"the {self.info.name} engine failed to export image {image.id}: "
                f"{error}"
            ) from None
        except OSError as error:
            raise UsageError(
                f"cannot write the export of image {image.id} to {str(destination)!r} "
                f"after {written_bytes} bytes: {error.strerror}; the export needs "
                f"free space about the image's size in {str(destination.parent)!r}, "
                "so free some or point TMPDIR at a larger directory"
            ) from None
        logger.info("exported %s: %d bytes", image.id, written_bytes)
        return destination

    def create_container(
        self,
        image: str,
        container_port: int,
        name: str,
        nano_cpus: int | None = None,
        memory_bytes: int | None = None,
    ) -> Container:
        """Create a container with ``container_port`` published on 127.0.0.1.

        The engine picks a free host port; ``host_port`` reads it after the start.
        """
        options: dict[str, Any] = {
            "name": name,
            "detach": True,
            "labels": {CONTAINER_LABEL: "hyperlane", PROCESS_LABEL: str(os.getpid())},
            "ports": {f"{container_port}/tcp": ("127.0.0.1", None)},
        }
        if nano_cpus is not None:
            options["nano_cpus"] = nano_cpus
        if memory_bytes is not None:
            options["mem_limit"] = memory_bytes
        try:
            return self.client.containers.create(image, **options)
        except docker.errors.ImageNotFound:
            raise ImageInvalid(
                f"image {image!r} not found in the {self.info.name} engine"
            ) from None
        except docker.errors.APIError as error:
            explanation = str(error.explanation or "").lower()
            if error.status_code == 400 or "no command" in explanation:
                # The engine rejected the image's config, e.g. no command at all.
                raise ImageInvalid(
                    f"the {self.info.name} engine cannot run image {image!r}: "
                    f"{error.explanation or error}; give the image a command (CMD "
                    "or ENTRYPOINT) that starts the service"
                ) from None
            raise EngineUnavailable(
                f"the {self.info.name} engine failed to create a container from "
                f"{image!r}: {error}"
            ) from None

    def start_container(self, container: Container) -> None:
        try:
            container.start()
        except docker.errors.APIError as error:
            raise ServiceNotReady(
                f"container {container.name} of image "
                f"{container.attrs['Config']['Image']!r} failed to start: {error}"
            ) from None

    def host_port(self, container: Container, container_port: int) -> int:
        """Return the 127.0.0.1 port that the engine published ``container_port`` on."""
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"] or {}
        for binding in bindings.get(f"{container_port}/tcp") or []:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
        raise ServiceNotReady(
            f"the {self.info.name} engine published no host port for port "
            f"{container_port} of container {container.name}; is the container "
            "running?"
        )

    def container_pid(self, container: Container) -> int:
        """Return the host PID of the container's init process (0 when not running)."""
        container.reload()
        return int(container.attrs["State"]["Pid"])

    def write_logs(self, container: Container, destination: Path) -> int:
        """Stream the container's stdout and stderr to ``destination``.

        Returns the bytes written.
        """
        written_bytes = 0
        try:
            with destination.open("wb") as output:
                # follow defaults to stream in docker-py, which would never end.
                chunks = container.logs(
                    stdout=True, stderr=True, stream=True, follow=False
                )
                for chunk in chunks:
                    output.write(chunk)
                    written_bytes += len(chunk)
        except docker.errors.APIError as error:
            raise EngineUnavailable(
                f"the {self.info.name} engine failed to return the logs of "
                f"container {container.name}: {error}"
            ) from None
        return written_bytes

    def remove_orphans(self) -> int:
        """Remove the containers that killed hyperlane commands on this host left.

        A container is an orphan when its creator's process id no longer runs.
        Only a local engine is checked, since a process id means nothing on
        another host. Return the number removed.
        """
        if not self.info.local:
            return 0
        try:
            candidates = self.client.containers.list(
                all=True, filters={"label": f"{CONTAINER_LABEL}=hyperlane"}
            )
        except docker.errors.APIError as error:
            logger.warning("failed to list leftover containers: %s", error)
            return 0
        removed = 0
        for container in candidates:
            pid_text = container.labels.get(PROCESS_LABEL, "")
            if not pid_text.isdigit() or process_runs(int(pid_text)):
                continue
            self.remove_container(container)
            removed += 1
        if removed:
            logger.info(
                "removed %d container(s) that killed hyperlane commands left", removed
            )
        return removed

    def remove_container(self, container: Container) -> None:
        """Remove a container, running or not; a container already gone is fine."""
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:
            logger.warning("failed to remove container %s: %s", container.name, error)


def process_runs(pid: int) -> bool:
    """Return whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
