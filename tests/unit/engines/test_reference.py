import pytest

from hyperlane.engines.engine import validate_reference
from hyperlane.errors import UsageError


@pytest.mark.parametrize(
    "reference",
    [
        "busybox",
        "app:1.0",
        "localhost/hyperlane-sample:latest",
        "localhost:5000/team/app",
        "registry.example:5000/team/app@sha256:" + "a" * 64,
        "Registry.Example/app",
        "a/b_c/d-e:v1.2-rc",
        "sha256:" + "b" * 64,
        "abcdef123456",
    ],
)
def test_reference_accepted(reference: str) -> None:
    validate_reference(reference)


@pytest.mark.parametrize(
    "reference",
    [
        "Bad Image!!",
        "UPPER/case",
        "Busybox",
        ":",
        "app:",
        "-app",
        "a//b",
        "a@sha256:zz",
        "x" * 300,
    ],
)
def test_reference_rejected(reference: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_reference(reference)
    assert repr(reference) in str(caught.value)
    assert "localhost/app:1.0" in str(caught.value)
