"""Thinking-block signatures (server/core/signing.py)."""

import stat

from server.core.signing import KEY_FILE, ThinkingSigner


def test_signatures_verify_and_detect_tampering(tmp_path):
    signer = ThinkingSigner.for_directory(tmp_path)
    signature = signer.sign("2+2 is 4")
    assert signer.verify("2+2 is 4", signature)
    assert not signer.verify("2+2 is 5", signature)
    assert not signer.verify("2+2 is 4", signature[:-2] + "AA")
    assert not signer.verify("2+2 is 4", "")
    assert signer.verify("", signer.sign(""))


def test_the_key_is_created_once_private_and_shared_by_every_server_on_the_store(tmp_path):
    first = ThinkingSigner.for_directory(tmp_path)
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    again = ThinkingSigner.for_directory(tmp_path)
    assert again.verify("text", first.sign("text"))
    assert not ThinkingSigner.for_directory(tmp_path / "other").verify("text", first.sign("text"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
