from server.core.thinking import ThinkSplitter


def split(pieces: list[str], started: bool = False) -> tuple[str, str]:
    splitter = ThinkSplitter(started)
    thinking = content = ""
    for piece in pieces:
        t, c = splitter.feed(piece)
        thinking, content = thinking + t, content + c
    t, c = splitter.flush()
    return thinking + t, content + c


def test_think_block_at_start_goes_to_thinking():
    assert split(["<thi", "nk>plan it</th", "ink>\nanswer"]) == ("plan it", "answer")


def test_prompt_that_opened_think_starts_in_thinking():
    assert split(["reasoning</think>done"], started=True) == ("reasoning", "done")


def test_think_tag_later_in_text_is_content():
    assert split(["Answer: <think>no</think>"]) == ("", "Answer: <think>no</think>")


def test_unclosed_think_is_all_thinking():
    assert split(["<think>still going"]) == ("still going", "")


def test_plain_text_unchanged():
    assert split(["Hello", " world"]) == ("", "Hello world")
