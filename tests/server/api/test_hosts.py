"""The Host allow-list (DNS rebinding): the matcher on its own, then real servers, one on
loopback with a configured LAN name, one on IPv6 loopback, one with the check turned off.

A rebinding page's requests reach 127.0.0.1 with the page's own name in `Host`; here that
name is set by hand on a request to the real server, which is exactly what arrives."""

from __future__ import annotations

import socket

import pytest
import requests

from server.api.hosts import HostMatcher, parse_host
from tests.conftest import MODEL, ServerProcess

EVIL = "evil.example"
HELLO = [{"role": "user", "content": "hi"}]

# ----------------------------------------------------------------------------- unit


@pytest.mark.parametrize("header", [
    "localhost", "localhost:12434", "LOCALHOST:1", "localhost.", "127.0.0.1", "127.0.0.1:80",
    "127.9.8.7:5", "[::1]", "[::1]:12434", "[0:0::1]:9", "host.docker.internal:12434",
    "model-runner.docker.internal", None,
])
def test_loopback_and_container_names_allowed(header):
    assert HostMatcher().allows(header)


@pytest.mark.parametrize("header", [
    EVIL, f"{EVIL}:12434", "localhost.evil.example", "evil.localhost", "127.0.0.1.nip.io",
    "192.168.1.5:12434", "[fd00::2]:1", "0.0.0.0:12434", "", "::1", "[::1", "localhost:x",
    "localhost:123456", "a b", "localhost,evil.example", "user@localhost", "[::1]x",
    "host.docker.internal.evil.example",
])
def test_other_hosts_denied_on_loopback(header):
    assert not HostMatcher().allows(header)


def test_bound_address_and_configured_names():
    m = HostMatcher("192.0.2.9", ["lan-box", "phone.example:8080", ".corp.example"])
    assert m.allows("192.0.2.9:12434") and m.allows("192.0.2.9")
    assert not m.allows("192.0.2.10:12434")
    assert m.allows("LAN-BOX:12434") and m.allows("lan-box")
    assert m.allows("phone.example:8080") and not m.allows("phone.example:8081")
    assert m.allows("corp.example") and m.allows("a.b.corp.example:1")
    assert not m.allows("evilcorp.example") and not m.allows(EVIL)
    assert HostMatcher("::1").allows("[::1]:5") and HostMatcher("[fd00::2]").allows("[fd00::2]")
    assert HostMatcher("mybox.lan").allows("mybox.lan:12434")


def test_wildcard_bind_accepts_addresses_and_this_host_name():
    m = HostMatcher("0.0.0.0")
    assert m.allows("192.0.2.2:12434") and m.allows("[fd00::2]:1") and m.allows("10.1.2.3")
    assert m.allows(socket.gethostname() + ":12434")
    assert not m.allows(f"{EVIL}:12434")
    assert HostMatcher("::").allows("203.0.113.7")


def test_star_turns_the_check_off():
    assert HostMatcher(allowed=["*"]).allows(EVIL)


@pytest.mark.parametrize("bad", ["http://lan-box", "lan-box/x", "a:b:c", "lan-box:port"])
def test_malformed_allowed_host_is_an_error(bad):
    with pytest.raises(ValueError, match="invalid allowed host"):
        HostMatcher(allowed=[bad])


def test_parse_host():
    assert (parse_host("[::1]:80").host, parse_host("[::1]:80").port) == ("::1", 80)
    assert parse_host("localhost").port is None
    assert parse_host("Example.COM.:1").host == "example.com"
    assert parse_host("[fe80::1%25eth0]:1").host == "fe80::1%25eth0"


# ----------------------------------------------------------------------------- live servers


def _start(tmp_path_factory, name: str, *args: str, env: dict[str, str] | None = None,
           url: str | None = None) -> ServerProcess:
    base = tmp_path_factory.mktemp(name)
    server = ServerProcess(base / "models", base / "server.log", *args,
                           env={"DMR_THREADS": "1", "DMR_API_KEYS": "", **(env or {})})
    if url:
        server.url = url.format(port=server.port)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _start(tmp_path_factory, "hosts", env={"DMR_ALLOWED_HOSTS": "lan-box, .corp.example"})
    yield s
    s.stop()


#: (method, path, body, check of the 403 body): one per route family.
FAMILIES = [
    ("GET", "/engines/v1/models", None,
     lambda r: r.json()["error"]["type"] == "permission_error"),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": HELLO, "max_tokens": 2},
     lambda r: r.json()["error"]["type"] == "permission_error"),
    ("POST", "/v1/messages", {"model": MODEL, "messages": HELLO, "max_tokens": 2},
     lambda r: r.json()["type"] == "error" and r.json()["error"]["type"] == "permission_error"),
    ("POST", "/anthropic/v1/messages/count_tokens", {"model": MODEL, "messages": HELLO},
     lambda r: r.json()["error"]["type"] == "permission_error"),
    ("GET", "/api/tags", None, lambda r: "not allowed" in r.json()["error"]),
    ("POST", "/api/chat", {"model": MODEL, "messages": HELLO, "stream": False},
     lambda r: "not allowed" in r.json()["error"]),
    ("GET", "/models", None, lambda r: r.headers["Content-Type"].startswith("text/plain")),
    ("GET", "/engines/ps", None, lambda r: "not allowed" in r.text),
    ("GET", "/engines/status", None, lambda r: "not allowed" in r.text),
    ("POST", "/engines/unload", {"all": True}, lambda r: "not allowed" in r.text),
    ("GET", "/metrics", None, lambda r: "not allowed" in r.text),
    ("GET", "/info", None, lambda r: "not allowed" in r.text),
    ("GET", "/", None, lambda r: "not allowed" in r.text),
    ("GET", "/openapi.json", None, lambda r: "not allowed" in r.text),
]


@pytest.mark.parametrize("method, path, body, check", FAMILIES,
                         ids=[f"{m} {p}" for m, p, *_ in FAMILIES])
def test_foreign_host_is_403_in_the_dialects_shape(server, method, path, body, check):
    r = requests.request(method, server.url + path, json=body,
                         headers={"Host": f"{EVIL}:{server.port}"})
    assert r.status_code == 403, r.text
    assert check(r), r.text
    assert EVIL in r.text and "allowed_hosts" in r.text


@pytest.mark.parametrize("method, path, body, check", FAMILIES,
                         ids=[f"{m} {p}" for m, p, *_ in FAMILIES])
def test_loopback_and_configured_hosts_are_served(server, method, path, body, check):
    for host in ("localhost", f"127.0.0.1:{server.port}", f"[::1]:{server.port}",
                 "model-runner.docker.internal", f"lan-box:{server.port}", "gpu.corp.example"):
        r = requests.request(method, server.url + path, json=body, headers={"Host": host})
        assert r.status_code == 200, (host, r.status_code, r.text)


def test_rebinding_post_without_origin_is_refused(server):
    """The CSRF-style write a rebinding page can send: text/plain, no Origin, a foreign Host."""
    r = requests.post(server.url + "/engines/unload", data='{"all": true}',
                      headers={"Host": EVIL, "Content-Type": "text/plain"})
    assert r.status_code == 403
    r = requests.post(server.url + "/models/create", data='{"from": "ai/x"}',
                      headers={"Host": EVIL, "Content-Type": "text/plain"})
    assert r.status_code == 403 and "not allowed" in r.text


def test_foreign_host_is_refused_before_the_origin_and_the_body(server):
    big = b"x" * (2 * 1024 * 1024)  # read and dropped, never parsed
    with requests.Session() as session:
        r = session.post(server.url + "/v1/chat/completions", data=big, headers={
            "Host": EVIL, "Origin": "http://localhost:3000", "Content-Type": "application/json"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert "Access-Control-Allow-Origin" not in r.headers
        # the kept-alive connection still serves the next request
        assert session.get(server.url + "/engines/v1/models").status_code == 200


def test_preflight_with_foreign_host_is_403(server):
    r = requests.options(server.url + "/v1/chat/completions", headers={
        "Host": EVIL, "Origin": f"http://{EVIL}", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403


def test_health_answers_any_host(server):
    r = requests.get(server.url + "/health", headers={"Host": EVIL})
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ipv6_loopback_server(tmp_path_factory):
    """Bound to ::1 and reached over IPv6: the browser's Host is `[::1]:port`."""
    s = _start(tmp_path_factory, "ipv6", "--host", "::1", url="http://[::1]:{port}")
    try:
        r = requests.get(s.url + "/engines/v1/models")
        assert r.status_code == 200 and r.json()["data"][0]["id"] == MODEL + ":latest"
        assert requests.get(s.url + "/api/tags", headers={"Host": EVIL}).status_code == 403
        import openai

        client = openai.OpenAI(base_url=s.url + "/engines/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
        assert out.choices[0].message.content is not None
    finally:
        s.stop()


def test_star_accepts_every_host(tmp_path_factory):
    s = _start(tmp_path_factory, "star", env={"DMR_ALLOWED_HOSTS": "*"})
    try:
        assert requests.get(s.url + "/models", headers={"Host": EVIL}).status_code == 200
    finally:
        s.stop()


def test_settings_from_env_and_yaml(monkeypatch, tmp_path):
    from server.config import Settings

    monkeypatch.setenv("DMR_ALLOWED_HOSTS", " lan-box , .corp.example,")
    monkeypatch.setenv("DMR_NO_AUTH", "1")
    monkeypatch.setenv("DMR_SOCKET", "~/dmr.sock")
    monkeypatch.setenv("DMR_TCP", "0")
    s = Settings.load()
    assert s.allowed_hosts == ["lan-box", ".corp.example"] and s.no_auth and not s.tcp
    assert s.socket.endswith("/dmr.sock") and not s.socket.startswith("~")
    for name in ("DMR_ALLOWED_HOSTS", "DMR_NO_AUTH", "DMR_SOCKET", "DMR_TCP"):
        monkeypatch.delenv(name)
    config = tmp_path / "dmr.yaml"
    config.write_text("server:\n  allowed-hosts: ['*']\n  no_auth: true\n  socket: /run/x.sock\n")
    s = Settings.load(config)
    assert s.allowed_hosts == ["*"] and s.no_auth and s.socket == "/run/x.sock" and s.tcp
