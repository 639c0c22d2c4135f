"""The `dmr` client commands (pull, ls, run, ...): each talks to a running server.

Each returns an exit code; failures raise ClientError, which `dmr` prints as one line and
exits 1. Tables go to stdout, progress to stderr, `--json` prints what the server returned.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .cli_output import ProgressBar, ago, size, table
from .client import Client, ClientError


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _follow(events, as_json: bool) -> str:
    """Show a progress stream; returns its final message."""
    bar = None if as_json else ProgressBar()
    last = ""
    try:
        for message in events:
            if as_json:
                print(json.dumps(message), flush=True)
            else:
                bar.update(message)
            if message.get("type") in ("success", "warning"):
                last = message.get("message", "")
                if message["type"] == "warning" and not as_json:
                    print(f"warning: {last}", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
    return last


# ------------------------------------------------------------------------ models


def pull(args: argparse.Namespace) -> int:
    if args.model.lower().endswith(".gguf") and (Path(args.model).exists()
                                                 or args.model.startswith(("/", ".", "~"))):
        path = Path(args.model).expanduser()
        tag = args.tag or _tag_for_file(path)
        return _package(Client(), path, tag, None, [], None, False, args.json)
    if args.tag:
        raise ClientError("--tag only applies when pulling a local .gguf file")
    result = _follow(Client().pull(args.model, args.bearer_token), args.json)
    if not args.json:
        print(result or "Model pulled successfully")
    return 0


def _tag_for_file(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("._-") or "model"
    return f"ai/{name}:latest"


def push(args: argparse.Namespace) -> int:
    result = _follow(Client().push(args.model, args.bearer_token), args.json)
    if not args.json:
        print(result or "Model pushed successfully")
    return 0


def package(args: argparse.Namespace) -> int:
    return _package(Client(), Path(args.gguf), args.model, args.context_size, args.license,
                    args.chat_template, args.push, args.json)


def _package(client: Client, gguf: Path, tag: str, context_size: int | None,
             licenses: list[str], chat_template: str | None, push_it: bool,
             as_json: bool) -> int:
    from .store import tarball
    from .store.gguf import GGUFError
    from .store.package import package_gguf

    if not gguf.is_file():
        raise ClientError(f"{gguf}: no such file")
    try:
        built = package_gguf(gguf, context_size=context_size, license_paths=licenses,
                             chat_template=chat_template)
    except (GGUFError, OSError) as exc:
        raise ClientError(f"cannot package {gguf}: {exc}") from exc
    print(f"Loading {gguf.name} into the model runner...", file=sys.stderr)
    client.load(tarball.write(built.blobs, built.manifest))
    client.tag(built.model_id, tag)
    if push_it:
        print(f"Pushing {tag}...", file=sys.stderr)
        _follow(client.push(tag), as_json)
        message = f"Model packaged and pushed as {tag}"
    else:
        message = f"Model packaged as {tag}"
    if as_json:
        _print_json({"id": built.model_id, "tag": tag, "pushed": push_it})
    else:
        print(message)
    return 0


def _context(config: dict[str, Any]) -> Any:
    if config.get("context_size"):
        return config["context_size"]
    arch = config.get("architecture")
    return (config.get("gguf") or {}).get(f"{arch}.context_length", "")


def ls(args: argparse.Namespace) -> int:
    models = Client().models()
    if args.model:
        models = [m for m in models if any(args.model in t for t in m["tags"])
                  or m["id"].startswith(args.model) or m["id"][7:].startswith(args.model)]
    if args.json:
        _print_json(models)
        return 0
    if args.quiet:
        for m in models:
            print(m["id"][7:19])
        return 0
    rows = []
    for m in models:
        cfg = m.get("config") or {}
        for name in m["tags"] or ["<none>"]:
            model_id = m["id"][7:19] if "backend" not in m else f"remote:{m['backend']}"
            rows.append([name, cfg.get("parameters", ""), cfg.get("quantization", ""),
                         cfg.get("architecture", ""), model_id, ago(m.get("created")),
                         _context(cfg), cfg.get("size", "")])
    table(["MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID", "CREATED",
           "CONTEXT", "SIZE"], rows)
    return 0


def rm(args: argparse.Namespace) -> int:
    client = Client()
    failed = 0
    for name in args.models:
        try:
            for action in client.remove(name, args.force):
                for verb, what in action.items():
                    print(f"{verb}: {what}")
        except ClientError as exc:
            print(f"dmr: {name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def purge(args: argparse.Namespace) -> int:
    if not args.force:
        raise ClientError("purge deletes every model in the store; run it again with --force")
    Client().purge()
    print("Model store purged")
    return 0


def inspect(args: argparse.Namespace) -> int:
    client = Client()
    _print_json(client.openai_model(args.model) if args.openai else client.model(args.model))
    return 0


def tag(args: argparse.Namespace) -> int:
    result = Client().tag(args.source, args.target)
    print(result.get("message", f"Model tagged as {args.target}"))
    return 0


# ------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    client = Client()
    if client.find(args.model) is None:
        print(f"Unable to find model '{args.model}' locally. Pulling from the server.",
              file=sys.stderr)
        _follow(client.pull(args.model), False)
    prompt = " ".join(args.prompt).strip()
    if prompt:
        _answer(client, args.model, [{"role": "user", "content": prompt}], args.max_tokens)
        return 0
    return _chat(client, args.model, args.max_tokens)


def _answer(client: Client, model: str, messages: list[dict[str, Any]],
            max_tokens: int | None = None) -> str:
    out = sys.stdout
    dim = out.isatty()
    text, thinking = "", False
    for kind, piece in client.chat(model, messages, max_tokens):
        if kind == "reasoning":
            if dim:  # show the model thinking, greyed, on a terminal only
                out.write(("\x1b[2m" if not thinking else "") + piece)
                thinking = True
            continue
        if thinking:
            out.write("\x1b[0m\n")
            thinking = False
        text += piece
        out.write(piece)
        out.flush()
    out.write("\x1b[0m\n" if thinking else "\n")
    out.flush()
    return text


def _chat(client: Client, model: str, max_tokens: int | None = None) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        print("Interactive chat mode started. Type '/bye' to exit.", file=sys.stderr)
    history: list[dict[str, Any]] = []
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/bye", "/exit", "/quit"):
            break
        history.append({"role": "user", "content": line})
        while True:
            try:
                reply = _answer(client, model, history, max_tokens)
                break
            except ClientError as exc:
                if "context size" not in str(exc) or len(history) < 3:
                    raise
                del history[:2]  # forget the oldest exchange and try again
        history.append({"role": "assistant", "content": reply})
    if interactive:
        print("Chat session ended.", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------ engines


def ps(args: argparse.Namespace) -> int:
    running = Client().ps()
    if args.json:
        _print_json(running)
        return 0
    rows = [[r["model_name"], r["backend_name"], r.get("mode", ""),
             "in use" if r.get("in_use") else ("never" if r.get("keep_alive") == "-1"
                                               else r.get("keep_alive", "")),
             _memory(r)]
            for r in running]
    table(["MODEL NAME", "BACKEND", "MODE", "UNTIL", "MEMORY (ESTIMATE / RSS)"], rows)
    return 0


def _memory(entry: dict[str, Any]) -> str:
    estimate, rss = entry.get("memory_estimate"), entry.get("memory_rss")
    if estimate is None and rss is None:
        return ""
    return f"{size(estimate) if estimate is not None else '?'} / " \
           f"{size(rss) if rss is not None else '?'}"


def unload(args: argparse.Namespace) -> int:
    if not args.all and not args.models:
        raise ClientError("name the models to unload, or use --all")
    result = Client().unload(args.models, args.all, args.backend)
    count = result.get("unloaded_runners", 0)
    print(f"Unloaded {count} model{'s' if count != 1 else ''}")
    return 0


def df(args: argparse.Namespace) -> int:
    usage = Client().df()
    if args.json:
        _print_json(usage)
        return 0
    table(["TYPE", "SIZE"], [["Models", size(usage.get("models_disk_usage"))],
                             ["Inference engine", size(usage.get("default_backend_disk_usage"))]])
    return 0


def configure(args: argparse.Namespace) -> int:
    client = Client()
    targets = list(args.targets)
    if targets and targets[0] == "show":
        _print_json(client.configuration(targets[1] if len(targets) > 1 else None))
        return 0
    if not targets:
        raise ClientError("name the model to configure")
    model, extra_flags = targets[0], targets[1:]
    body: dict[str, Any] = {"model": model}
    if args.context_size is not None:
        body["context-size"] = args.context_size
    flags = list(args.runtime_flag or []) + extra_flags
    if flags:
        body["runtime-flags"] = flags
    if args.keep_alive is not None:
        body["keep_alive"] = args.keep_alive
    llamacpp = {}
    if args.reasoning_budget is not None:
        llamacpp["reasoning-budget"] = args.reasoning_budget
    if args.extra_buffers is not None:
        llamacpp["extra-buffers"] = args.extra_buffers
    if llamacpp:
        body["llamacpp"] = llamacpp
    if len(body) == 1:
        raise ClientError("nothing to configure: give --context-size, --runtime-flag, "
                          "--keep-alive, --reasoning-budget or --extra-buffers")
    notes = client.configure(body)
    for line in notes.splitlines():
        if line.strip():
            print(line, file=sys.stderr)
    print(f"Configured {model}")
    return 0


def status(args: argparse.Namespace) -> int:
    client = Client()
    try:
        engines = client.status()
    except ClientError as exc:
        if args.json:
            _print_json({"running": False, "error": str(exc)})
        raise
    remote = client.remote_status() if any(
        text.split(":", 1)[-1].strip().startswith("remote") for text in engines.values()) else {}
    if args.json:
        _print_json({"running": True, "engines": engines, "host": client.shown,
                     **({"remote": remote} if remote else {})})
        return 0
    print(f"Docker Model Runner is running ({client.shown})")
    rows = [[name, text.split(":", 1)[0],
             "remote" if name in remote else text.split(":", 1)[-1].strip()]
            for name, text in engines.items()]
    table(["BACKEND", "STATUS", "DETAILS"], rows)
    if remote:
        print()
        table(["BACKEND", "UPSTREAM", "HEALTH", "LATENCY", "IN FLIGHT", "MODELS"],
              [_upstream_row(name, up) for name, engine in remote.items()
               for up in engine.get("upstreams", [])])
    return 0


def _upstream_row(engine: str, up: dict[str, Any]) -> list[str]:
    health = up.get("state", "")
    if health != "up" and up.get("last_error"):
        health += f" ({up['last_error']})"
    latency = up.get("latency_ms")
    models = up.get("models")
    return [engine, up.get("url", ""), health,
            "" if latency is None else f"{latency:.0f} ms", str(up.get("in_flight", 0)),
            "?" if models is None else ", ".join(models)]


def version(args: argparse.Namespace) -> int:
    client = Client()
    try:
        server = client.version().get("version")
    except ClientError:
        server = None
    if args.json:
        _print_json({"client": __version__, "server": server, "host": client.shown})
        return 0
    print(f"Client: dmr {__version__}")
    print(f"Server: {f'dmr {server}' if server else 'not reachable'} ({client.base})")
    return 0
