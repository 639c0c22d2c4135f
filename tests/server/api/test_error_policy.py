"""The one error policy every dialect shares (api/common.py), without a model: fast."""

from types import SimpleNamespace

import pytest
from flask import Blueprint, Flask, abort

from server.api import (
    anthropic,
    anthropic_codec,
    ollama,
    openai,
    openai_codec,
    openai_legacy_codec,
)
from server.api.common import install_error_handlers, plain_error
from server.core.errors import Overloaded
from server.core.types import TextDelta


def _app(shape) -> Flask:
    bp = Blueprint("dialect", __name__)
    install_error_handlers(bp, shape, "test")

    @bp.get("/core")
    def core():
        raise Overloaded(retry_after=3)

    @bp.get("/http")
    def http():
        abort(413)

    @bp.get("/bug")
    def bug():
        raise RuntimeError("boom")

    app = Flask(__name__)
    app.register_blueprint(bp)
    return app


@pytest.mark.parametrize("shape, body", [
    (openai.error_response, lambda r: r.get_json()["error"]["message"]),
    (ollama.error_response, lambda r: r.get_json()["error"]),
    (plain_error, lambda r: r.get_data(as_text=True)),
])
def test_every_error_answers_in_the_dialects_shape(shape, body):
    client = _app(shape).test_client()
    r = client.get("/core")
    assert r.status_code == 503
    if shape is not plain_error:
        assert r.headers["Retry-After"] == "3"
    assert "overloaded" in body(r)
    r = client.get("/http")
    assert r.status_code == 413 and body(r).strip()
    r = client.get("/bug")
    assert r.status_code == 500 and "internal server error: boom" in body(r)


def test_anthropic_statuses_come_from_its_table():
    app = _app(anthropic.error_response)
    with app.test_request_context():
        client = app.test_client()
        r = client.get("/core")
        assert r.status_code == 529 and r.get_json()["error"]["type"] == "overloaded_error"
        r = client.get("/bug")
        assert r.status_code == 500 and r.get_json()["error"]["type"] == "api_error"


def _failing_events():
    yield TextDelta(choice=0, text="hi")
    raise RuntimeError("boom")


def test_openai_streams_report_any_failure_in_band():
    chat = list(openai_codec.chat_stream(SimpleNamespace(events=_failing_events()), "m", False))
    assert '"content":"hi"' in chat[1] and "internal server error: boom" in chat[-1]
    legacy = list(openai_legacy_codec.completion_stream([SimpleNamespace(events=_failing_events())], "m", 1,
                                           False))
    assert '"text":"hi"' in legacy[0] and "internal server error: boom" in legacy[-1]


@pytest.fixture(scope="module")
def keyed_app(tmp_path_factory):
    from server.app import create_app
    from server.config import Settings

    settings = Settings(models_dir=tmp_path_factory.mktemp("models"), import_default_model=False,
                        api_keys=["sk-test"])
    return create_app(settings).test_client()


def _openai(r):
    return r.get_json()["error"]["code"] == "invalid_api_key"


def _anthropic(r):
    return r.get_json()["error"]["type"] == "authentication_error"


def _ollama(r):
    return r.get_json()["error"].startswith("missing API key")


def _plain(r):
    return r.mimetype == "text/plain" and r.get_data(as_text=True).startswith("missing API key")


@pytest.mark.parametrize("method, path, check", [
    ("POST", "/v1/chat/completions", _openai),
    ("GET", "/engines/llama.cpp/v1/models", _openai),
    ("POST", "/engines/v1/responses", _openai),
    ("POST", "/v1/messages", _anthropic),
    ("POST", "/anthropic/v1/messages/count_tokens", _anthropic),
    ("POST", "/api/chat", _ollama),
    ("GET", "/models", _plain),
    ("GET", "/engines/status", _plain),
    ("GET", "/metrics", _plain),
    # no route: the dialect that claimed the path answers
    ("GET", "/v1/nowhere", _openai),
    ("GET", "/engines/v1/messages/nowhere", _anthropic),
    ("GET", "/anthropic/nowhere", _anthropic),
    ("GET", "/api/nowhere", _ollama),
    ("GET", "/nowhere", _plain),
    ("GET", "/v1/chat/completions", _openai),  # a route, but not for GET
])
def test_security_raises_and_the_matched_dialect_answers(keyed_app, method, path, check):
    r = keyed_app.open(path, method=method, json={})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert check(r), r.get_data(as_text=True)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_kind_has_a_type_in_every_dialect():
    import pickle

    import server.api.remote_chat  # noqa: F401  (its errors join the tree)
    import server.core.memory  # noqa: F401
    import server.store.errors  # noqa: F401
    from server.core.errors import DMRError, ErrorKind

    assert set(openai_codec._ERROR_TYPES) == set(ErrorKind) == set(anthropic_codec._ERRORS)
    for cls in [DMRError, *_subclasses(DMRError)]:
        assert isinstance(cls.kind, ErrorKind), cls
    error = pickle.loads(pickle.dumps(Overloaded(retry_after=2)))
    assert error.kind is ErrorKind.OVERLOADED and error.kind == "overloaded"


def test_neutral_fields_get_openais_names():
    from server.core.errors import Field, InvalidRequest, ModelNotFound

    assert openai_codec.error_body(InvalidRequest("x", field=Field.RESPONSE_SCHEMA))["error"][
        "param"] == "response_format"
    error = openai_codec.error_body(ModelNotFound("m"))["error"]
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert openai_codec.error_body(InvalidRequest("x", param="stop"))["error"]["param"] == "stop"
