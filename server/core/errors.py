"""One error hierarchy for the whole server; each dialect maps it to its own status and body.

Every layer raises these; only `server/api/` turns them into answers (each dialect's codec
maps `kind` to its error type and status, `api/common.py` installs the handlers). A `kind` is
an `ErrorKind`, never a free string, so the dialects' tables can be checked for completeness.

    DMRError (500, server_error)
    ├── InvalidRequest (400, invalid_request)
    │   └── ContextTooLong (exceed_context_size)
    ├── NotSupported (400, invalid_request)
    ├── Unauthorized (401, authentication)
    ├── Forbidden (403, permission)
    ├── NotFound (404, not_found)
    │   ├── ModelNotFound
    │   └── EngineNotFound
    ├── RequestTimeout (408, request_timeout)
    ├── Conflict (409, conflict)
    ├── EngineNotInstalled (412, engine_not_installed)
    ├── PayloadTooLarge (413, request_too_large)
    ├── ModelLoadFailed (422, model_load_failed)
    ├── Overloaded (503, overloaded)
    ├── RunnerCrashLoop (503, runner_crash_loop)
    └── EngineFailure (500, server_error)
        └── RunnerCrashed (runner_crashed)

Elsewhere, as members of the same tree: `core/memory.py` (InsufficientMemory 507, MemoryBusy
< Overloaded), `store/errors.py` (RegistryError 500, RemoteNotFound < NotFound,
RegistryUnauthorized < Unauthorized, UnsupportedMediaType 422, InsufficientStorage 507),
`engines/remote/engine.py` (NoUpstream < Overloaded, UpstreamBroken 502) and
`api/remote_chat.py` (UpstreamRefused 502).
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):  # noqa: UP042 (StrEnum would drop Python 3.10)
    """A dialect-neutral error category; each dialect maps every member to its own type.

    A `str` subclass, so a kind compares equal to its value and pickles across the runner
    pipe as itself."""

    SERVER_ERROR = "server_error"
    INVALID_REQUEST = "invalid_request"
    EXCEED_CONTEXT_SIZE = "exceed_context_size"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    ENGINE_NOT_INSTALLED = "engine_not_installed"
    REQUEST_TOO_LARGE = "request_too_large"
    OVERLOADED = "overloaded"
    REQUEST_TIMEOUT = "request_timeout"
    MODEL_LOAD_FAILED = "model_load_failed"
    RUNNER_CRASHED = "runner_crashed"
    RUNNER_CRASH_LOOP = "runner_crash_loop"
    INSUFFICIENT_MEMORY = "insufficient_memory"
    INSUFFICIENT_STORAGE = "insufficient_storage"

    def __str__(self) -> str:
        return self.value


class Field(str, Enum):  # noqa: UP042 (StrEnum would drop Python 3.10)
    """The part of a request an error is about, in no dialect's words: each dialect's codec
    names it (OpenAI's `param`: RESPONSE_SCHEMA is `response_format` there)."""

    MODEL = "model"
    GRAMMAR = "grammar"
    RESPONSE_SCHEMA = "response_schema"

    def __str__(self) -> str:
        return self.value


class DMRError(Exception):
    """Base class: `status` is the HTTP status, `kind` a dialect-neutral error category.

    `field` names the part of the request at fault without a dialect's words (raised below
    `server/api/`); `param` is a field as the request spelled it (raised by a dialect, or by
    the core for a field every dialect names alike, such as `messages`). `details` join
    OpenAI's error object."""

    status = 500
    kind: ErrorKind = ErrorKind.SERVER_ERROR

    def __init__(self, message: str, *, param: str | None = None, field: Field | None = None,
                 **details):
        super().__init__(message)
        self.message = message
        self.param = param
        self.field = field
        self.details = details

    def __reduce__(self):
        # Errors cross the pipe from a runner process; subclasses have their own __init__
        # signatures, so rebuild from the attributes rather than calling __init__ again.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type, args: tuple, attributes: dict) -> DMRError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(attributes)
    return error


class InvalidRequest(DMRError):
    status = 400
    kind = ErrorKind.INVALID_REQUEST


class ContextTooLong(InvalidRequest):
    """The prompt (plus what must be generated) does not fit the model's context window."""

    kind = ErrorKind.EXCEED_CONTEXT_SIZE

    def __init__(self, n_prompt_tokens: int, n_ctx: int):
        super().__init__(
            f"the request exceeds the available context size: the prompt has {n_prompt_tokens} "
            f"tokens but the context size is {n_ctx} tokens; shorten the prompt or raise "
            f"context-size",
            n_prompt_tokens=n_prompt_tokens,
            n_ctx=n_ctx,
        )


class Unauthorized(DMRError):
    status = 401
    kind = ErrorKind.AUTHENTICATION


class Forbidden(DMRError):
    status = 403
    kind = ErrorKind.PERMISSION


class NotFound(DMRError):
    status = 404
    kind = ErrorKind.NOT_FOUND


class ModelNotFound(NotFound):
    def __init__(self, name: str):
        super().__init__(f"model not found: {name}", field=Field.MODEL)
        self.name = name


class EngineNotFound(NotFound):
    def __init__(self, name: str):
        super().__init__("backend not found", engine=name)


class Conflict(DMRError):
    status = 409
    kind = ErrorKind.CONFLICT


class EngineNotInstalled(DMRError):
    """A known engine that this server does not run (DMR answers 412)."""

    status = 412
    kind = ErrorKind.ENGINE_NOT_INSTALLED

    def __init__(self, name: str):
        super().__init__(
            f'backend "{name}" is not installed; configure it under "engines" in the config file',
            engine=name,
        )


class PayloadTooLarge(DMRError):
    status = 413
    kind = ErrorKind.REQUEST_TOO_LARGE


class NotSupported(DMRError):
    """The request is well formed, but this model or engine cannot do it."""

    status = 400
    kind = ErrorKind.INVALID_REQUEST


class Overloaded(DMRError):
    status = 503
    kind = ErrorKind.OVERLOADED

    def __init__(self, message: str = "server is overloaded, retry later", retry_after: int = 1):
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class RequestTimeout(DMRError):
    """The client took longer than `client_timeout` to send its request."""

    status = 408
    kind = ErrorKind.REQUEST_TIMEOUT


class ModelLoadFailed(DMRError):
    """The model's file cannot be loaded (corrupt, truncated, or not a model llama.cpp knows).

    A 422, not a 500: retrying will not help, pulling or packaging the model again will, and
    every other model keeps serving."""

    status = 422
    kind = ErrorKind.MODEL_LOAD_FAILED

    def __init__(self, name: str, reason: str):
        super().__init__(f"model {name} cannot be loaded: {reason}; remove it and pull it "
                         "again", field=Field.MODEL)
        self.reason = reason


class EngineFailure(DMRError):
    """The engine failed on a well-formed request (a real server fault)."""

    status = 500
    kind = ErrorKind.SERVER_ERROR


class RunnerCrashed(EngineFailure):
    """The process running a model died (a native crash in llama.cpp, or the OOM killer).

    Only that model's requests fail; the next request starts a new runner. `hint` names a
    setting that may help (the engine knows which)."""

    kind = ErrorKind.RUNNER_CRASHED

    def __init__(self, model: str, how: str, last_error: str | None, *, while_: str = "",
                 hint: str = ""):
        detail = f"; last llama.cpp error: {last_error}" if last_error else \
            "; llama.cpp logged no error before it"
        super().__init__(f"the llama.cpp runner for {model} stopped ({how})"
                         f"{' ' + while_ if while_ else ''}{detail}. The next request starts "
                         f"a new runner.{' ' + hint if hint else ''}")
        self.model = model
        self.how = how
        self.hint = hint


class RunnerCrashLoop(DMRError):
    """A model's runner crashed too often in a short time; it is not restarted for a while."""

    status = 503
    kind = ErrorKind.RUNNER_CRASH_LOOP

    def __init__(self, model: str, crashes: int, window: float, retry_after: int,
                 last_crash: str, hint: str):
        super().__init__(
            f"{model} is not being restarted: its llama.cpp runner crashed {crashes} times "
            f"within {window:g} s (last: {last_crash}). {hint} It will be tried again in "
            f"{retry_after} s, or at once after `dmr configure` changes its settings",
            retry_after=retry_after)
        self.retry_after = retry_after
