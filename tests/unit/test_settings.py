"""Settings: flags over environment over config file over defaults, with bounds."""

from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.settings import AuditSettings, ImageSettings, LoadSettings, load_settings
from tests.unit.probes import environment_without_settings, run_python


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HYPERLANE_DURATION", "HYPERLANE_CONNECTIONS", "HYPERLANE_ENGINE"):
        monkeypatch.delenv(name, raising=False)


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_sources() -> None:
    settings = load_settings(AuditSettings, {})
    assert settings.duration == 10.0
    assert settings.connections == 8
    assert settings.cpu_floor == pytest.approx(0.010)
    assert settings.memory_floor == 100 * 2**20
    assert settings.engine == "auto"


def test_flag_beats_environment_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "h.toml", '[audit]\nduration = "7s"\n')
    monkeypatch.setenv("HYPERLANE_DURATION", "5s")
    settings = load_settings(AuditSettings, {"duration": "3s"}, config)
    assert settings.duration == 3.0


def test_environment_beats_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "h.toml", '[audit]\nduration = "7s"\n')
    monkeypatch.setenv("HYPERLANE_DURATION", "5s")
    assert load_settings(AuditSettings, {}, config).duration == 5.0


def test_file_section_per_command(tmp_path: Path) -> None:
    _write_config(
        tmp_path / "hyperlane.toml",
        "[audit]\nconnections = 3\n\n[load]\nconnections = 11\n",
    )
    assert load_settings(AuditSettings, {}).connections == 3
    assert load_settings(LoadSettings, {}).connections == 11


def test_file_dashed_keys(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", '[audit]\nstart-timeout = "2m"\n')
    assert load_settings(AuditSettings, {}, config).start_timeout == 120.0


def test_unknown_key_suggests(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", "[audit]\nconections = 3\n")
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {}, config)
    assert "unknown setting 'conections'" in str(caught.value)
    assert "did you mean 'connections'?" in str(caught.value)


def test_unknown_section_suggests(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", "[audti]\nconnections = 3\n")
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {}, config)
    assert "[audti]" in str(caught.value)
    assert "did you mean 'audit'?" in str(caught.value)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", "[audit\n")
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {}, config)
    assert str(config) in str(caught.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {}, tmp_path / "absent.toml")
    assert "not found" in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"connections": "0"}, "--connections"),
        ({"duration": "-1s"}, "--duration"),
        ({"duration": "ten"}, "--duration"),
        ({"port": "70000"}, "--port"),
        ({"path": "index.html"}, "--path"),
        ({"engine": "containerd"}, "--engine"),
        ({"cpu_floor": "lots"}, "--cpu-floor"),
        ({"memory_floor": "12 parsecs"}, "--memory-floor"),
    ],
)
def test_bounds_name_flag(flags: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, flags)
    assert fragment in str(caught.value)
    assert repr(next(iter(flags.values()))) in str(caught.value)


def test_quantities_parse() -> None:
    settings = load_settings(
        AuditSettings,
        {"cpu_floor": "250m", "memory_floor": "64Mi", "sample_interval": "200ms"},
    )
    assert settings.cpu_floor == pytest.approx(0.25)
    assert settings.memory_floor == 64 * 2**20
    assert settings.sample_interval == pytest.approx(0.2)


def test_error_names_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERLANE_DURATION", "abc")
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {})
    assert "invalid value 'abc' for HYPERLANE_DURATION" in str(caught.value)


def test_error_names_config_key(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", '[audit]\nconnections = "x"\n')
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {}, config)
    assert "invalid value 'x' for connections in [audit]" in str(caught.value)


def test_error_names_key_as_spelled(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path / "h.toml", "[audit]\nstart-timeout = -1\nmemory-flor = 3\n"
    )
    with pytest.raises(UsageError) as raised:
        load_settings(AuditSettings, {}, config)
    message = str(raised.value)
    assert f"for start-timeout in [audit] of {config}" in message
    assert f"unknown setting 'memory-flor' in [audit] of {config}" in message
    assert "did you mean 'memory-floor'?" in message


def test_range_error_shows_given_text() -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, {"duration": "99999h"})
    assert "'99999h'" in str(caught.value)
    assert "86400 seconds" in str(caught.value)


@pytest.mark.parametrize(
    "path", ["/é", "/a b", "/index.html#top", "health", "/tab\there"]
)
def test_path_rejects(path: str) -> None:
    with pytest.raises(UsageError, match="percent-encode"):
        load_settings(AuditSettings, {"path": path})


@pytest.mark.parametrize("path", ["/", "/health?full=1", "/caf%C3%A9", "/a/b.html"])
def test_path_accepts(path: str) -> None:
    assert load_settings(AuditSettings, {"path": path}).path == path


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"memory_floor": "5Mi"}, "6291456 bytes"),
        ({"memory_floor": "2Ti"}, "1099511627776 bytes"),
        ({"cpu_floor": "0.5m"}, "0.001 cores"),
        ({"cpu_floor": "257"}, "256 cores"),
        ({"cpu_floor": "1_000"}, "invalid CPU quantity"),
        ({"cpu_floor": "1e3"}, "invalid CPU quantity"),
        ({"rate": "nan"}, "finite number"),
    ],
)
def test_quantity_bounds(flags: dict[str, str], fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_settings(AuditSettings, flags)
    assert fragment in str(caught.value)


def test_config_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        load_settings(AuditSettings, {}, tmp_path)


def test_negative_byte_limit_in_file_rejected(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "h.toml", "[image]\nmax-hidden-bytes = -5\n")
    with pytest.raises(UsageError) as raised:
        load_settings(ImageSettings, {}, config)
    assert "invalid value -5 for max-hidden-bytes" in str(raised.value)


def test_fractional_byte_count_rejected() -> None:
    with pytest.raises(UsageError) as raised:
        load_settings(ImageSettings, {"max_hidden_bytes": "2.5"})
    assert "whole number" in str(raised.value)


def test_percent_sign_accepted() -> None:
    settings = load_settings(ImageSettings, {"max_hidden_percent": "12.5%"})
    assert settings.max_hidden_percent == 12.5


def test_percentage_for_a_ratio_names_the_ratio() -> None:
    with pytest.raises(UsageError) as raised:
        load_settings(ImageSettings, {"min_dive_efficiency": "95"})
    assert "write 0.95 for 95 %" in str(raised.value)


def test_platform_is_case_insensitive() -> None:
    settings = load_settings(ImageSettings, {"platform": "Linux/AMD64"})
    assert settings.platform == "linux/amd64"


def test_validator_built_on_first_use(tmp_path: Path) -> None:
    # A run builds the validator of its own command only, which keeps start-up short.
    probe = (
        "from hyperlane import settings\n"
        "models = [settings.ImageSettings, settings.LoadSettings]\n"
        "print(*(model.__pydantic_complete__ for model in models))\n"
        "settings.load_settings(settings.ImageSettings, {'ci': 'true'})\n"
        "print(*(model.__pydantic_complete__ for model in models))"
    )
    result = run_python(probe, cwd=tmp_path, env=environment_without_settings())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False False", "True False"]
