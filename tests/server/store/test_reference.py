import pytest

from server.core.errors import InvalidRequest
from server.store.reference import parse


@pytest.mark.parametrize("text", ["smollm2", "ai/smollm2", "ai/smollm2:latest",
                                  "docker.io/ai/smollm2:latest", " AI/SmolLM2 ",
                                  "index.docker.io/ai/smollm2"])
def test_docker_hub_forms_normalize_to_one_name(text):
    assert str(parse(text)) == "ai/smollm2:latest"


def test_hf_alias_lowercases_name_but_keeps_tag_case():
    assert str(parse("hf.co/Org/Model-GGUF:Q4_K_M")) == "huggingface.co/org/model-gguf:Q4_K_M"


def test_registry_with_port_and_namespace():
    ref = parse("localhost:5000/team/model:v1")
    assert (ref.registry, ref.repository, ref.tag) == ("localhost:5000", "team/model", "v1")


def test_digest_reference():
    digest = "sha256:" + "a" * 64
    assert parse(f"ai/x@{digest}").digest == digest


@pytest.mark.parametrize("bad", ["../etc", "ai/../x", "a b", "x:../../y", "ai/x@sha256:zz",
                                 "/abs/path", "ai/x%2f..", "", "ai//x", "ai/x:"])
def test_traversal_and_malformed_references_are_rejected(bad):
    with pytest.raises(InvalidRequest):
        parse(bad)
