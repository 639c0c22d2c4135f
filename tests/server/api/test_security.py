"""CORS and API keys: the origin matcher on its own, then two real servers (one open with extra
origins, one with keys) driven by each dialect's official client and by raw requests."""

from __future__ import annotations

import time

import anthropic
import httpx
import ollama
import openai
import pytest
import requests

from server import cli
from server.api.security import KeyChecker, OriginMatcher, bind_warning, is_loopback
from server.config import Settings
from tests.conftest import MODEL, ServerProcess

KEYS = ("sk-test-one", "sk-test-two")
EXTRA_ORIGINS = "https://app.example.com, http://lan.example:*"
HELLO = [{"role": "user", "content": "hi"}]

# ----------------------------------------------------------------------------- unit: matching


@pytest.mark.parametrize("origin", [
    "http://localhost:3000", "http://localhost", "https://localhost:8443",
    "http://127.0.0.1:5173", "https://127.0.0.1", "http://[::1]:8080", "HTTP://LocalHost:3000",
])
def test_loopback_origins_allowed_by_default(origin):
    assert OriginMatcher().allows(origin)


@pytest.mark.parametrize("origin", [
    "http://example.com", "http://localhost.evil.com:3000", "http://127.0.0.2:80", "null",
    "file://", "http://localhost:3000/path", "ftp://localhost:21", "http://0.0.0.0:3000", "",
])
def test_other_origins_denied_by_default(origin):
    assert not OriginMatcher().allows(origin)


def test_configured_patterns():
    m = OriginMatcher(["https://app.example.com", "http://lan.example:*", "http://a.test:8080"])
    assert m.allows("https://app.example.com")
    assert m.allows("https://app.example.com:443")  # the default port, spelled out
    assert not m.allows("https://app.example.com:8443")
    assert not m.allows("http://app.example.com")  # another scheme is another origin
    assert m.allows("http://lan.example:1") and m.allows("http://lan.example")
    assert not m.allows("https://lan.example:1")
    assert m.allows("http://a.test:8080") and not m.allows("http://a.test:8081")
    assert not m.allows("http://sub.lan.example:1")


def test_star_allows_every_origin():
    assert OriginMatcher(["*"]).allows("https://anything.example:9")


@pytest.mark.parametrize("bad", ["example.com", "http://", "http://a.test:*:1", "http://a/b"])
def test_malformed_pattern_is_an_error(bad):
    with pytest.raises(ValueError, match="invalid CORS origin"):
        OriginMatcher([bad])


def test_key_checker():
    keys = KeyChecker(KEYS)
    assert keys.enabled and keys.valid("sk-test-two")
    assert not keys.valid("sk-test-on") and not keys.valid("")
    assert not KeyChecker(["", ""]).enabled


def test_settings_from_env_and_yaml(monkeypatch, tmp_path):
    monkeypatch.setenv("DMR_ORIGINS", " https://a.test , http://b.test:* ,")
    monkeypatch.setenv("DMR_API_KEYS", "k1,k2")
    s = Settings.load()
    assert s.cors_origins == ["https://a.test", "http://b.test:*"]
    assert s.api_keys == ["k1", "k2"]
    assert "k1" not in repr(s)
    monkeypatch.delenv("DMR_ORIGINS")
    monkeypatch.delenv("DMR_API_KEYS")
    config = tmp_path / "dmr.yaml"
    config.write_text("server:\n  cors_origins: ['*']\n  api_keys: [abc]\n")
    s = Settings.load(config)
    assert s.cors_origins == ["*"] and s.api_keys == ["abc"]


def test_loopback_and_bind_warning():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "myhost"]))
    assert bind_warning("127.0.0.1", []) is None
    assert bind_warning("0.0.0.0", ["k"]) is None
    assert "without API keys" in bind_warning("0.0.0.0", [])


def test_serve_beyond_loopback_needs_a_key_or_no_auth(monkeypatch, capsys, tmp_path):
    from gunicorn.app.base import BaseApplication

    monkeypatch.delenv("DMR_API_KEYS", raising=False)
    monkeypatch.delenv("DMR_NO_AUTH", raising=False)
    monkeypatch.setattr(BaseApplication, "run", lambda self: None)  # nothing is bound
    argv = ["serve", "--host", "0.0.0.0", "--port", "1", "--models-dir", str(tmp_path)]
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "needs an API key (generated" in err and "WARNING" not in err
    assert (tmp_path / "api-key").read_text().strip() in err
    args = cli.build_parser().parse_args([*argv, "--no-auth"])
    assert args.func(args) == 0
    assert "WARNING: serving on 0.0.0.0 without API keys" in capsys.readouterr().err
    monkeypatch.setenv("DMR_NO_AUTH", "1")  # the environment's opt-out
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == 0
    assert "WARNING: serving on 0.0.0.0 without API keys" in capsys.readouterr().err
    monkeypatch.setenv("DMR_API_KEYS", "k")
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "WARNING" not in err and "needs an API key" not in err


def test_no_tcp_needs_a_socket(tmp_path):
    args = cli.build_parser().parse_args(["serve", "--no-tcp", "--models-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--no-tcp needs --socket"):
        args.func(args)


# ----------------------------------------------------------------------------- live servers


def _start(tmp_path_factory, name: str, env: dict[str, str], *args: str):
    base = tmp_path_factory.mktemp(name)
    server = ServerProcess(base / "models", base / "server.log", *args,
                           env={"DMR_THREADS": "1", **env})
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    server = _start(tmp_path_factory, "open", {"DMR_ORIGINS": EXTRA_ORIGINS, "DMR_API_KEYS": ""})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    server = _start(tmp_path_factory, "keyed", {"DMR_API_KEYS": ",".join(KEYS)},
                    "--access-log")
    yield server
    server.stop()


# -------------------------------------------------------------------------------------- CORS


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:5173",
                                    "https://app.example.com", "http://lan.example:8080"])
def test_allowed_origin_is_echoed_once(open_server, origin):
    r = requests.get(open_server.url + "/engines/v1/models", headers={"Origin": origin})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == origin
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in r.headers["Vary"]
    assert r.raw.headers.getlist("Access-Control-Allow-Origin") == [origin]


def test_no_origin_passes_without_cors_headers(open_server):
    r = requests.get(open_server.url + "/v1/models")
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("method, path, check", [
    ("POST", "/engines/v1/chat/completions",
     lambda r: r.json()["error"]["type"] == "permission_error"),
    ("GET", "/v1/models", lambda r: r.json()["error"]["message"] == "Origin not allowed"),
    ("POST", "/v1/messages", lambda r: r.json()["error"]["type"] == "permission_error"
     and r.json()["type"] == "error"),
    ("POST", "/anthropic/v1/messages/count_tokens",
     lambda r: r.json()["error"]["message"] == "Origin not allowed"),
    ("POST", "/api/chat", lambda r: r.json() == {"error": "Origin not allowed"}),
    ("GET", "/models", lambda r: r.text == "Origin not allowed\n"
     and r.headers["Content-Type"].startswith("text/plain")),
    ("GET", "/engines/status", lambda r: r.text == "Origin not allowed\n"),
])
def test_disallowed_origin_is_403_in_the_dialects_shape(open_server, method, path, check):
    r = requests.request(method, open_server.url + path, json={"model": MODEL},
                         headers={"Origin": "https://evil.example"})
    assert r.status_code == 403, r.text
    assert check(r), r.text
    assert "Access-Control-Allow-Origin" not in r.headers


def test_wildcard_port_is_not_a_prefix(open_server):
    for origin in ("http://lan.example.evil.com:80", "http://localhost.evil.com:3000"):
        r = requests.get(open_server.url + "/v1/models", headers={"Origin": origin})
        assert r.status_code == 403


def test_preflight(open_server):
    origin = "http://localhost:8080"
    r = requests.options(open_server.url + "/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204 and r.content == b""
    assert r.headers["Access-Control-Allow-Origin"] == origin
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE"
    assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Origin" in r.headers["Vary"]


def test_preflight_from_disallowed_origin_is_403(open_server):
    r = requests.options(open_server.url + "/api/chat", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers


def test_open_server_needs_no_key(open_server):
    client = openai.OpenAI(base_url=open_server.url + "/engines/v1", api_key="anything",
                           max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL + ":latest"]


# -------------------------------------------------------------------------------------- keys


def test_openai_sdk_with_and_without_key(keyed_server):
    base = keyed_server.url + "/engines/v1"
    bad = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
    assert info.value.status_code == 401
    assert info.value.body["type"] == "authentication_error"
    assert info.value.body["code"] == "invalid_api_key"
    good = openai.OpenAI(base_url=base, api_key=KEYS[1], max_retries=0)
    out = good.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
    assert out.choices[0].message.content is not None


def test_openai_error_body_exactly(keyed_server):
    r = requests.get(keyed_server.url + "/v1/models")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (
        "authentication_error", None, "invalid_api_key")


def test_anthropic_sdk_with_and_without_key(keyed_server):
    bad = anthropic.Anthropic(base_url=keyed_server.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=MODEL, messages=HELLO, max_tokens=2)
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "authentication_error"
    good = anthropic.Anthropic(base_url=keyed_server.url + "/anthropic", api_key=KEYS[0],
                               max_retries=0)
    assert good.messages.create(model=MODEL, messages=HELLO, max_tokens=2).type == "message"
    # a Bearer token (the SDK's auth_token) works as well
    bearer = anthropic.Anthropic(base_url=keyed_server.url, auth_token=KEYS[1], max_retries=0)
    assert bearer.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0


def test_ollama_client_with_and_without_key(keyed_server):
    bad = ollama.Client(host=keyed_server.url)
    with pytest.raises(ollama.ResponseError) as info:
        bad.chat(model=MODEL, messages=HELLO, options={"num_predict": 2})
    assert info.value.status_code == 401 and "API key" in info.value.error
    good = ollama.Client(host=keyed_server.url, headers={"Authorization": f"Bearer {KEYS[0]}"})
    out = good.chat(model=MODEL, messages=HELLO, options={"num_predict": 2})
    assert out.done


def test_native_routes_need_a_key(keyed_server):
    for method, path in (("GET", "/models"), ("GET", "/engines/status"), ("GET", "/info"),
                         ("POST", "/models/create"), ("GET", "/")):
        r = requests.request(method, keyed_server.url + path)
        assert r.status_code == 401, path
        assert r.headers["Content-Type"].startswith("text/plain"), path
    r = requests.get(keyed_server.url + "/models", headers={"x-api-key": KEYS[0]})
    assert r.status_code == 200


def test_health_is_open(keyed_server):
    assert requests.get(keyed_server.url + "/health").status_code == 200


def test_cors_and_keys_together(keyed_server):
    origin = "http://localhost:3000"
    pre = requests.options(keyed_server.url + "/v1/messages", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})
    assert pre.status_code == 204  # browsers send preflights without credentials
    r = requests.get(keyed_server.url + "/api/tags", headers={"Origin": origin})
    assert r.status_code == 401 and r.json()["error"].startswith("missing API key")
    assert r.headers["Access-Control-Allow-Origin"] == origin  # so the page can read why


def test_keys_never_logged(keyed_server):
    requests.get(keyed_server.url + "/v1/models", headers={"Authorization": f"Bearer {KEYS[0]}"})
    requests.get(keyed_server.url + "/v1/models", headers={"x-api-key": "sk-guess-123"})
    log = keyed_server.log()
    assert "GET /v1/models" in log  # the access log is on
    for secret in (*KEYS, "sk-guess-123"):
        assert secret not in log


def test_stream_carries_the_cors_header(keyed_server):
    origin = "http://127.0.0.1:5173"
    with requests.post(keyed_server.url + "/engines/llama.cpp/v1/chat/completions", stream=True,
                       headers={"Origin": origin, "Authorization": f"Bearer {KEYS[0]}"},
                       json={"model": MODEL, "messages": HELLO, "max_tokens": 2,
                             "stream": True}) as r:
        assert r.status_code == 200
        assert r.raw.headers.getlist("Access-Control-Allow-Origin") == [origin]
        assert b"[DONE]" in r.content


def test_rejections_do_not_stall_shutdown(tmp_path):
    """An early 401/403 reads the body it refuses: left unread, it kept a worker thread
    waiting on the keep-alive connection and SIGTERM took the whole graceful timeout."""
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log",
                           env={"DMR_THREADS": "1", "DMR_API_KEYS": KEYS[0]})
    clients = [httpx.Client() for _ in range(4)]  # each keeps its connection alive
    try:
        server.wait_ready()
        body = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
        for client, path in zip(clients, ("/v1/chat/completions", "/v1/messages", "/api/chat",
                                          "/models/create"), strict=True):
            assert client.post(server.url + path, json=body).status_code == 401
        evil = {"Origin": "https://evil.example", "x-api-key": KEYS[0]}
        assert clients[0].post(server.url + "/api/chat", json=body,
                               headers=evil).status_code == 403
        time.sleep(0.5)
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 10, server.log()
    finally:
        server.stop()
        for client in clients:
            client.close()
