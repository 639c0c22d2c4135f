"""The one settings table (server/config.py) and what is made from it: the environment
mapping, `dmr serve`'s flags and --help, and docs/configuration.md's table."""

from __future__ import annotations

import dataclasses

from server import config, config_docs
from server.cli import build_parser
from server.config import Settings


def test_the_docs_table_is_fresh():
    text = config_docs.DOC.read_text(encoding="utf-8")
    assert config_docs.updated(text) == text, "run: python -m server.config_docs"


def test_every_setting_is_documented_once():
    fields = [f.name for f in dataclasses.fields(Settings)]
    rendered = config_docs.render()
    for name in fields:
        assert rendered.count(f"| `{name}` |") == 1
    assert len(config.env_names()) == len(set(config.env_names()))


def test_environment_names_come_from_the_table(monkeypatch):
    monkeypatch.setenv("DISABLE_METRICS", "1")
    monkeypatch.setenv("DMR_INSECURE_REGISTRIES", "reg.local:5000, other")
    monkeypatch.setenv("DMR_KEEP_ALIVE", "2m")
    settings = Settings.load()
    assert settings.disable_metrics is True
    assert settings.insecure_registries == ["reg.local:5000", "other"]
    assert settings.keep_alive == 120


def test_flags_come_from_the_table_and_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DMR_KEEP_ALIVE", "2m")
    monkeypatch.setenv("DMR_MAX_QUEUE", "5")
    args = build_parser().parse_args(["serve", "--keep-alive", "10m", "--no-tcp", "--no-auth",
                                      "--socket", str(tmp_path / "x.sock"),
                                      "--speculative", "off",
                                      "--port", "9"])
    settings = Settings.load(args.config, **config.from_arguments(args))
    assert (settings.keep_alive, settings.tcp, settings.no_auth, settings.socket,
            settings.speculative, settings.port) == (600, False, True, str(tmp_path / "x.sock"), "off", 9)
    assert settings.max_queue == 5  # no flag given: the environment stands


def test_help_lists_every_flag(capsys):
    parser = build_parser()
    try:
        parser.parse_args(["serve", "--help"])
    except SystemExit:
        pass
    shown = capsys.readouterr().out
    for f, meta in config.table():
        if meta.flag:
            assert meta.flag in shown, f.name
    assert "[DMR_THREADS]" in shown
