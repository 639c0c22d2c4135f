"""The `dmr` command. `dmr serve` runs the server: one Gunicorn worker with the gthread worker
class (plus client timeouts, see worker.py), so one copy of each model serves every request
and llama.cpp threads never exceed the cores. The other commands (pull, ls, run, ...) are
clients of a running server, in cli_commands.py."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from . import __version__, config
from .config import Settings


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    settings = Settings.load(args.config, **config.from_arguments(args))
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    binds = _binds(settings)

    class Server(BaseApplication):
        def load_config(self):
            options = {
                "bind": binds,
                "umask": 0o117,  # the Unix socket is created 0660: its owner and group only
                "workers": 1,
                "worker_class": "server.worker.TimeoutThreadWorker",
                "threads": settings.http_threads,
                "timeout": 120,
                "graceful_timeout": math.ceil(max(0.0, settings.graceful_timeout)),
                "keepalive": 5,
                "loglevel": settings.log_level,
                "accesslog": "-" if args.access_log else None,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from .app import create_app

            return create_app(settings)

    shown = ", ".join(f"http://{b}" if not b.startswith("unix:") else b for b in binds)
    print(f"dmr {__version__}: serving on {shown} (models in {settings.models_dir})",
          file=sys.stderr, flush=True)
    from . import worker
    from .api.hosts import HostMatcher
    from .api.security import OriginMatcher

    OriginMatcher(settings.cors_origins)  # a malformed origin fails here, not in the worker
    HostMatcher(settings.host, settings.allowed_hosts)  # and a malformed allowed host
    worker.CLIENT_TIMEOUT = settings.client_timeout  # inherited by the forked worker
    _guard_exposure(settings)
    Server().run()
    return 0


def _binds(settings: Settings) -> list[str]:
    """Gunicorn's bind addresses: TCP (IPv6 in brackets) and/or `unix:PATH`."""
    binds = []
    if settings.tcp:
        host = settings.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        binds.append(f"{host}:{settings.port}")
    if settings.socket:
        binds.append(f"unix:{settings.socket}")
    if not binds:
        raise ValueError("nothing to listen on: --no-tcp needs --socket PATH")
    return binds


def _guard_exposure(settings: Settings) -> None:
    """Beyond loopback, no request is served without a key unless told `--no-auth`."""
    from . import keyfile
    from .api.security import bind_warning, is_loopback

    if not settings.tcp or is_loopback(settings.host) or settings.api_keys:
        return
    if settings.no_auth:
        print(bind_warning(settings.host, settings.api_keys), file=sys.stderr, flush=True)
        return
    key, created = keyfile.load_or_create(settings.models_dir)
    settings.api_keys = [key]  # create_app runs in the worker Gunicorn forks from here
    url = f"http://{keyfile.reachable_address(settings.host)}:{settings.port}"
    print(keyfile.banner(key, created, url, keyfile.key_path(settings.models_dir)),
          file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dmr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server",
                           description="Run the server. Settings come from defaults, a YAML "
                           "file (--config), the environment [NAME], then these flags.")
    serve.add_argument("--config", help="YAML settings file")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    config.add_arguments(serve)  # one flag per setting (docs/configuration.md)
    serve.set_defaults(func=_serve)
    _add_client_commands(sub)
    return parser


def _add_client_commands(sub) -> None:
    """The commands that talk to a running server (MODEL_RUNNER_HOST), as `docker model` has."""
    from . import cli_commands as c

    def command(name: str, func, help_: str, *, json_flag: bool = False, aliases=()):
        p = sub.add_parser(name, help=help_, aliases=list(aliases))
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.set_defaults(func=func)
        return p

    p = command("pull", c.pull, "pull a model (registry, hf.co/..., or a local .gguf file)",
                json_flag=True)
    p.add_argument("model")
    p.add_argument("--bearer-token", help="token for the registry or Hugging Face")
    p.add_argument("--tag", help="name for a local .gguf file (default ai/<file name>)")
    p = command("push", c.push, "push a model to its registry", json_flag=True)
    p.add_argument("model")
    p.add_argument("--bearer-token", help="token for the registry")
    p = command("package", c.package, "package a GGUF file as a model (and push it)",
                json_flag=True)
    p.add_argument("--gguf", required=True, help="path to the GGUF file")
    p.add_argument("--context-size", type=int, help="context size the model should run with")
    p.add_argument("--license", action="append", default=[], help="license file to include")
    p.add_argument("--chat-template", help="Jinja chat template file to include")
    p.add_argument("--push", action="store_true", help="push to the registry the name points at")
    p.add_argument("model", help="name for the model, e.g. registry.example/org/model:tag")
    p = command("ls", c.ls, "list models", json_flag=True, aliases=("list",))
    p.add_argument("model", nargs="?", help="only models whose name contains this")
    p.add_argument("-q", "--quiet", action="store_true", help="only model IDs")
    p = command("rm", c.rm, "remove models", aliases=("remove",))
    p.add_argument("models", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="remove even with several tags")
    p = command("purge", c.purge, "remove every model")
    p.add_argument("-f", "--force", action="store_true", help="do it")
    p = command("inspect", c.inspect, "show a model's details as JSON")
    p.add_argument("model")
    p.add_argument("--openai", action="store_true", help="OpenAI's model object")
    p = command("tag", c.tag, "give a model another name")
    p.add_argument("source")
    p.add_argument("target")
    p = command("run", c.run, "chat with a model (one prompt, or interactively)")
    p.add_argument("model")
    p.add_argument("prompt", nargs="*", help="answer this and exit")
    p.add_argument("--max-tokens", type=int, help="longest answer, in tokens")
    command("ps", c.ps, "list loaded models", json_flag=True)
    p = command("unload", c.unload, "unload models from memory")
    p.add_argument("models", nargs="*")
    p.add_argument("--all", action="store_true", help="unload every idle model")
    p.add_argument("--backend", help="only this engine")
    command("df", c.df, "disk usage", json_flag=True)
    p = command("configure", c.configure,
                "set a model's runner settings (kept across restarts); `configure show [MODEL]`")
    p.add_argument("targets", nargs="*", metavar="MODEL [-- FLAGS]")
    p.add_argument("--context-size", type=int, help="tokens per sequence (-1 resets)")
    p.add_argument("--runtime-flag", action="append", help="llama.cpp flag, repeatable")
    p.add_argument("--keep-alive", help="idle time before unloading: 5m, 1h, -1 = never")
    p.add_argument("--reasoning-budget", type=int, help="-1 unlimited, 0 disables thinking")
    p.add_argument("--extra-buffers", choices=("auto", "on", "off"),
                   help="llama.cpp's AMX/repack buffer types for this model")
    from .cli_requests import requests_command

    p = command("requests", requests_command, "requests and answers the server recorded",
                json_flag=True)
    p.add_argument("-f", "--follow", action="store_true", help="print new requests as they come")
    p.add_argument("--include-existing", action="store_true",
                   help="with --follow, first the requests already recorded")
    p.add_argument("--model", help="only this model's requests")
    command("status", c.status, "is the server running, and its engines", json_flag=True)
    command("version", c.version, "client and server versions", json_flag=True)


def _joined_flag_values(argv: list[str]) -> list[str]:
    """`--runtime-flag --temp` as `--runtime-flag=--temp`: argparse would take a value that
    starts with "-" for an option of its own, and DMR documents exactly this form."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--runtime-flag" and i + 1 < len(argv):
            out.append(f"--runtime-flag={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    from .client import ClientError

    argv = _joined_flag_values(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ClientError) as exc:
        print(f"dmr: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
