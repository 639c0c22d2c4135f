"""The `dmr` command. `dmr serve` runs the server: one Gunicorn worker with the gthread worker
class, so one copy of each model serves every request and llama.cpp threads never exceed the
cores."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .config import Settings


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    settings = Settings.load(args.config, host=args.host, port=args.port,
                             models_dir=args.models_dir, context_size=args.context_size,
                             parallel=args.parallel, threads=args.threads)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    class Server(BaseApplication):
        def load_config(self):
            options = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": settings.http_threads,
                "timeout": 120,
                "graceful_timeout": 30,
                "keepalive": 5,
                "loglevel": settings.log_level,
                "accesslog": "-" if args.access_log else None,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from .app import create_app

            return create_app(settings)

    print(f"dmr {__version__}: serving on http://{settings.host}:{settings.port} "
          f"(models in {settings.models_dir})", file=sys.stderr, flush=True)
    Server().run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dmr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 12434, or MODEL_RUNNER_PORT)")
    serve.add_argument("--models-dir", help="model store directory (or MODELS_PATH)")
    serve.add_argument("--config", help="YAML settings file")
    serve.add_argument("--context-size", type=int, help="tokens per request (default 4096)")
    serve.add_argument("--parallel", type=int, help="sequences decoded together (default 4)")
    serve.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"dmr: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
