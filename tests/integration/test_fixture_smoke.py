import docker
import pytest
from docker.models.containers import Container

from tests.conftest import unique_name

pytestmark = pytest.mark.integration


def test_busybox_runs(
    engine_client: docker.DockerClient, busybox_image: str, reap: list[Container]
) -> None:
    container = engine_client.containers.run(
        busybox_image, ["echo", "hello"], name=unique_name("hl-smoke"), detach=True
    )
    reap.append(container)
    result = container.wait(timeout=30)
    assert result["StatusCode"] == 0
    assert b"hello" in container.logs()
