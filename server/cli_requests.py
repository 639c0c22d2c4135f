"""`dmr requests [-f] [--include-existing] [--model M] [--json]`, like `docker model requests`:
what the request recorder kept (a table, or DMR's JSON), or each new record as it is made."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .cli_output import table
from .client import Client, ClientError

HEADERS = ["TIME", "DIALECT", "MODEL", "REQUEST", "STATUS", "LATENCY", "TOKENS", "PROMPT"]


def requests_command(args: argparse.Namespace) -> int:
    if args.include_existing and not args.follow:
        raise ClientError("--include-existing can only be used with --follow")
    client = Client()
    if args.follow:
        return _follow(client, args)
    groups = client.requests(args.model)
    if args.json:
        print(json.dumps(groups, indent=2))
        return 0
    records = sorted((r for g in groups for r in g.get("records") or []),
                     key=lambda r: r.get("timestamp") or 0)
    table(HEADERS, [row(r) for r in records])
    return 0


def _follow(client: Client, args: argparse.Namespace) -> int:
    for event, data in client.follow_requests(args.model, args.include_existing):
        if event == "connected":  # from here on, nothing recorded is missed
            print("Connected to request stream. Press Ctrl+C to stop.", file=sys.stderr,
                  flush=True)
        if event not in ("new_request", "existing_request"):
            continue
        if args.json:
            print(data, flush=True)
            continue
        for group in json.loads(data):
            for record in group.get("records") or []:
                print("  ".join(str(c) for c in row(record)), flush=True)
    print("Stream closed by server.", file=sys.stderr)
    return 0


def row(record: dict[str, Any]) -> list[Any]:
    usage = record.get("usage") or {}
    tokens = (f"{usage.get('prompt_tokens', 0)}->{usage.get('completion_tokens', 0)}"
              if usage else "")
    latency = record.get("latency_ms")
    return [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("timestamp") or 0)),
            record.get("dialect") or record.get("origin") or "",
            record.get("model", ""),
            f"{record.get('method', '')} {record.get('url', '')}",
            record.get("status_code", ""),
            f"{latency:.0f} ms" if isinstance(latency, int | float) else "",
            tokens, excerpt(record.get("request") or "")]


def excerpt(request_text: str, width: int = 40) -> str:
    """The last thing the user said (a message, prompt or input), on one short line."""
    try:
        body = json.loads(request_text)
    except ValueError:
        return ""
    text: Any = ""
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            text = messages[-1].get("content", "")
        else:
            text = body.get("prompt", body.get("input", ""))
    if isinstance(text, list):
        text = " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in text)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."
