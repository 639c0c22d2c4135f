from server.core.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = ""
    for piece in pieces:
        text, stop = matcher.feed(piece)
        out += text
        if stop:
            return out, stop
    return out + matcher.flush(), None


def test_stop_split_across_pieces_is_found_and_dropped():
    assert feed_all(StopMatcher(["END"]), ["hello E", "N", "D and more"]) == ("hello ", "END")


def test_partial_stop_is_held_back_then_released():
    matcher = StopMatcher(["END"])
    assert matcher.feed("abc EN") == ("abc ", None)
    assert matcher.feed("x") == ("ENx", None)


def test_earliest_of_several_stops_wins():
    assert feed_all(StopMatcher(["world", "lo"]), ["hello world"]) == ("hel", "lo")


def test_no_stops_passes_text_through():
    assert StopMatcher([]).feed("anything") == ("anything", None)


def test_unmatched_tail_is_flushed():
    assert feed_all(StopMatcher(["STOP"]), ["the end ST"]) == ("the end ST", None)
