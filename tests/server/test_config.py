import os

import pytest

from server.config import Settings, parse_duration


@pytest.mark.parametrize("value,seconds", [("5m", 300), ("1h30m", 5400), ("90s", 90), (12, 12),
                                           ("-1", -1), ("250ms", 0.25), ("0", 0)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("bad", ["5x", "m", "1h30"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_file_then_env_then_arguments(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 9000\n  context-size: 2048\n  keep_alive: 10m\n")
    monkeypatch.setenv("MODEL_RUNNER_PORT", "9100")
    settings = Settings.load(config, context_size=1024)
    assert settings.port == 9100 and settings.context_size == 1024
    assert settings.keep_alive == 600


def test_threads_never_exceed_cores():
    assert Settings.from_mapping({"threads": 999}).threads <= (os.cpu_count() or 1)


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_mapping({"colour": "blue"})


def test_timeouts_and_kv_layout_from_the_environment(monkeypatch):
    monkeypatch.setenv("DMR_REQUEST_TIMEOUT", "2m")
    monkeypatch.setenv("DMR_CLIENT_TIMEOUT", "15")
    monkeypatch.setenv("DMR_GRACEFUL_TIMEOUT", "45s")
    monkeypatch.setenv("DMR_KV_UNIFIED", "true")
    settings = Settings.load()
    assert (settings.request_timeout, settings.client_timeout, settings.graceful_timeout) == (
        120, 15, 45)
    assert settings.kv_unified is True
    defaults = Settings()
    assert (defaults.request_timeout, defaults.client_timeout, defaults.graceful_timeout,
            defaults.kv_unified) == (600, 60, 30, False)
