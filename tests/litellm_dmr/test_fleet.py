"""The plugin in a LiteLLM Router fleet: which server errors make the Router retry another
deployment and count toward `allowed_fails`/cooldowns (connection errors, timeouts, 5xx),
and which do not (4xx: the caller's mistake is the same on every server).

A real Router with real deployments: the session server and a port nobody listens on; the
stub upstream (tests/server/remote/stub_upstream.py) only where a server must answer 5xx, 4xx
or too slowly on demand.
"""

from __future__ import annotations

import asyncio

import litellm
import pytest

import litellm_dmr  # noqa: F401  (registers the provider)
from tests.conftest import free_port
from tests.server.remote.stub_upstream import MODEL as STUB_MODEL
from tests.server.remote.stub_upstream import StubUpstream

MSGS = [{"role": "user", "content": "hello"}]
FLEET = {"num_retries": 2, "allowed_fails": 1, "cooldown_time": 60, "retry_after": 0}


def _router(*bases: tuple[str, str], model: str = "ai/smollm2", **settings) -> litellm.Router:
    deployments = [{"model_name": "m", "model_info": {"id": name},
                    "litellm_params": {"model": f"docker_model_runner/{model}",
                                       "api_base": base}}
                   for name, base in bases]
    return litellm.Router(model_list=deployments, **{**FLEET, **settings})


def _cooling(router: litellm.Router) -> dict[str, dict]:
    ids = [d["model_info"]["id"] for d in router.model_list]
    return dict(router.cooldown_cache.get_active_cooldowns(model_ids=ids,
                                                           parent_otel_span=None))


@pytest.fixture
def stub():
    upstream = StubUpstream("stub")
    yield upstream
    upstream.stop()


def _stub_base(stub: StubUpstream) -> str:
    return f"http://127.0.0.1:{stub.port}"


def test_a_dead_server_is_cooled_down_and_no_request_is_lost(server_url):
    router = _router(("dead", f"http://127.0.0.1:{free_port()}"), ("live", server_url))
    for _ in range(12):
        resp = router.completion(model="m", messages=MSGS, max_tokens=2)
        assert resp.choices[0].message.content is not None
    for _ in range(3):
        chunks = list(router.completion(model="m", messages=MSGS, max_tokens=2, stream=True))
        assert chunks
    cooling = _cooling(router)
    assert list(cooling) == ["dead"] and cooling["dead"]["status_code"] == "503"


def test_async_and_streamed_calls_move_on_too(server_url):
    router = _router(("dead", f"http://127.0.0.1:{free_port()}"), ("live", server_url))

    async def go():
        for _ in range(6):
            stream = await router.acompletion(model="m", messages=MSGS, max_tokens=2,
                                              stream=True)
            assert [c async for c in stream]
            resp = await router.acompletion(model="m", messages=MSGS, max_tokens=2)
            assert resp.choices

    asyncio.run(go())
    assert list(_cooling(router)) == ["dead"]


@pytest.mark.parametrize("mode,status", [("500", "500"), ("502", "502"), ("503", "503")])
def test_5xx_is_retried_elsewhere_and_counted(stub, server_url, mode, status):
    stub.mode = mode
    router = _router(("sick", _stub_base(stub)), ("live", server_url))
    for _ in range(10):
        assert router.completion(model="m", messages=MSGS, max_tokens=2).choices
    assert list(_cooling(router)) == ["sick"]
    assert _cooling(router)["sick"]["status_code"] == status
    assert len(stub.requests) == 2  # allowed_fails 1: the second failure cooled it down


def test_an_overloaded_servers_retry_after_sets_its_cooldown(stub, server_url):
    stub.mode = "503"  # with Retry-After: 2
    router = _router(("busy", _stub_base(stub)), ("live", server_url))
    for _ in range(10):
        assert router.completion(model="m", messages=MSGS, max_tokens=2).choices
    assert _cooling(router)["busy"]["cooldown_time"] == 2


def test_a_timeout_is_retried_elsewhere_and_counted(stub, server_url):
    stub.mode, stub.delay = "slow", 3
    router = _router(("slow", _stub_base(stub)), ("live", server_url), timeout=1)
    for _ in range(8):
        assert router.completion(model="m", messages=MSGS, max_tokens=2).choices
    assert _cooling(router)["slow"]["status_code"] == "408"


def test_a_bad_request_is_neither_retried_nor_counted(server_url):
    """Both deployments are real servers; the request is invalid on either."""
    router = _router(("a", server_url), ("b", server_url + "/engines/llama.cpp/v1"))
    for _ in range(3):
        with pytest.raises(litellm.BadRequestError) as err:
            router.completion(model="m", messages=MSGS, max_tokens=2, temperature="hot")
        assert err.value.status_code == 400
    assert _cooling(router) == {}


def test_4xx_from_a_server_is_raised_at_once(stub):
    stub.mode = "400"
    other = StubUpstream("other")
    other.mode = "400"
    try:
        router = _router(("a", _stub_base(stub)), ("b", _stub_base(other)), model=STUB_MODEL)
        with pytest.raises(litellm.BadRequestError, match="stub says 400"):
            router.completion(model="m", messages=MSGS, max_tokens=2)
        assert len(stub.requests) + len(other.requests) == 1  # not retried anywhere
        assert _cooling(router) == {}
    finally:
        other.stop()
