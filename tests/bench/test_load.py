"""The load script (bench/load.py): its checks catch what they claim to, and a quick run against
the session's shared server exercises every dialect and mode with no failures
(docs/reliability.md)."""

import pytest

from bench.load import (
    KINDS,
    QUICK,
    BadBody,
    Context,
    check_openai_sse,
    listening_pid,
    percentile,
    print_report,
    run_load,
    send,
)

CHUNK = '{"choices": [{"delta": {"content": "Hi"}, "finish_reason": "length"}]}'


def content(choice: dict) -> str | None:
    return choice["delta"].get("content")


def test_quick_load_has_no_failures(server_url):
    report = run_load(server_url, QUICK["requests"], QUICK["clients"], max_tokens=16)
    print_report(report)  # shown when the test fails, with the first failing requests
    assert report.skipped_kinds == []
    assert set(report.kinds) == set(KINDS), "every request kind exercised"
    assert len(report.results) == QUICK["requests"]
    assert report.failures == [], [f"{r.kind}: {r.failure} {r.message}" for r in report.failures]
    assert report.five_xx == 0 and report.overloaded == 0
    summary = report.summary()
    assert summary["latency"]["p50"] > 0 and summary["requests_per_second"] > 0
    # The shared server is this session's child: /proc finds it by its port.
    assert report.rss_mib["before"] > 0 and report.rss_mib["after"] > 0
    assert len(report.rss_timeline) == 10


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_error_status_counts_as_a_status_failure(server_url, kind):
    result = send(Context(server_url, "ai/no-such-model", 4, 30), kind, 0)
    assert (result.failure, result.status) == ("status", 404), result.message


def test_a_stream_must_end_with_done():
    assert check_openai_sse([CHUNK, "[DONE]"], content) == "Hi"
    with pytest.raises(BadBody, match="did not end"):
        check_openai_sse([CHUNK], content)
    with pytest.raises(BadBody, match="after"):
        check_openai_sse(["[DONE]", CHUNK, "[DONE]"], content)
    with pytest.raises(BadBody, match="finish_reason"):
        check_openai_sse(['{"choices": [{"delta": {"content": "Hi"}}]}', "[DONE]"], content)


def test_listening_pid_ignores_non_loopback_urls():
    assert listening_pid("http://192.0.2.1:12434") is None
    assert listening_pid("http://example.com") is None


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([3.0], 99) == 3.0
