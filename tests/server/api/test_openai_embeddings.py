"""Embeddings: strings, lists, token arrays; float and base64 (the SDK's default)."""

import base64
import math
import struct

import requests


def norm(vector):
    return math.sqrt(sum(x * x for x in vector))


def test_single_string_sdk_base64(openai_client):
    reply = openai_client.embeddings.create(model="ai/smollm2", input="hello world")
    [item] = reply.data
    assert len(item.embedding) == 576 and abs(norm(item.embedding) - 1) < 1e-4
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 0


def test_list_and_token_arrays(openai_client):
    reply = openai_client.embeddings.create(model="ai/smollm2",
                                            input=["a cat", "a dog", "quantum physics"],
                                            encoding_format="float")
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1, 2]

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    tokens = openai_client.embeddings.create(model="ai/smollm2", input=[[19556, 665], [42]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 3


def test_same_text_same_vector_in_any_batch(openai_client):
    alone = openai_client.embeddings.create(model="ai/smollm2", input="stable",
                                            encoding_format="float").data[0].embedding
    batched = openai_client.embeddings.create(model="ai/smollm2", input=["other", "stable"],
                                              encoding_format="float").data[1].embedding
    assert max(abs(a - b) for a, b in zip(alone, batched, strict=True)) < 1e-3


def test_base64_is_little_endian_float32(server_url):
    body = {"model": "ai/smollm2", "input": "hi", "encoding_format": "base64"}
    encoded = requests.post(server_url + "/v1/embeddings", json=body).json()["data"][0]["embedding"]
    raw = base64.b64decode(encoded)
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    plain = requests.post(server_url + "/v1/embeddings",
                          json={**body, "encoding_format": "float"}).json()["data"][0]["embedding"]
    assert max(abs(a - b) for a, b in zip(floats, plain, strict=True)) < 1e-6


def test_dimensions_truncate_and_renormalise(openai_client):
    reply = openai_client.embeddings.create(model="ai/smollm2", input="x", dimensions=64,
                                            encoding_format="float")
    vector = reply.data[0].embedding
    assert len(vector) == 64 and abs(norm(vector) - 1) < 1e-4


def test_empty_string_is_a_bad_request(server_url):
    r = requests.post(server_url + "/v1/embeddings", json={"model": "ai/smollm2", "input": [""]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
