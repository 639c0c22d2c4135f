"""Registration, the guarded override of LiteLLM's built-in provider, and zero cost (no server)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import litellm
import pytest
from litellm.types.utils import LlmProviders
from litellm.utils import (
    ProviderConfigManager,
    get_optional_params_embeddings,
    get_optional_params_image_gen,
)

import litellm_dmr
from litellm_dmr import registration
from litellm_dmr.cost import ensure_zero_cost
from litellm_dmr.registration import OverrideError, verify_override


def mapped(provider):
    return [e["custom_handler"] for e in litellm.custom_provider_map
            if e["provider"] == provider]


def test_import_registers_both_names_once():
    litellm_dmr.register()
    litellm_dmr.register()
    assert mapped("docker_model_runner") == [litellm_dmr.handler]
    assert mapped("dmr") == [litellm_dmr.handler]
    assert {"docker_model_runner", "dmr"} <= set(litellm._custom_providers)


def test_builtin_is_out_of_the_openai_compatible_dispatch():
    assert registration.builtin_present()  # LiteLLM >= 1.80.5 ships one
    assert "docker_model_runner" not in litellm.openai_compatible_providers
    assert "docker_model_runner" not in litellm.constants.openai_compatible_providers
    verify_override()


@pytest.mark.parametrize("name,model", [
    ("docker_model_runner/llama.cpp/ai/smollm2", "llama.cpp/ai/smollm2"),
    ("docker_model_runner/ai/smollm2:360M-Q4_K_M", "ai/smollm2:360M-Q4_K_M"),
    ("dmr/hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
])
def test_litellm_strips_only_the_provider_prefix(name, model):
    got_model, provider, _, _ = litellm.get_llm_provider(name)
    assert got_model == model
    assert provider == name.split("/", 1)[0]


def test_reassigned_map_like_the_proxy_does_still_routes_to_us(monkeypatch):
    """The proxy replaces custom_provider_map with its config's list after importing us."""
    monkeypatch.setattr(litellm, "custom_provider_map", [
        {"provider": "docker_model_runner", "custom_handler": litellm_dmr.handler}])
    litellm.utils.custom_llm_setup()
    verify_override()


def test_relisted_builtin_fails_loudly(monkeypatch):
    monkeypatch.setattr(litellm, "openai_compatible_providers",
                        [*litellm.openai_compatible_providers, "docker_model_runner"])
    with pytest.raises(OverrideError, match="openai_compatible_providers") as err:
        verify_override()
    assert "dmr/" in str(err.value) and registration.litellm_version() in str(err.value)


def test_changed_list_type_fails_loudly(monkeypatch):
    monkeypatch.setattr(litellm, "openai_compatible_providers",
                        tuple(litellm.openai_compatible_providers))
    with pytest.raises(OverrideError, match="not a list"):
        registration.disable_builtin()


def test_dedicated_dispatch_branch_fails_loudly(monkeypatch):
    """Upstream LiteLLM main adds `_complete_docker_model_runner`, which we cannot pre-empt."""
    source = 'x = 1\nelif custom_llm_provider == "docker_model_runner":\n    pass\n'
    monkeypatch.setattr(registration, "_module_source", lambda name: source)
    with pytest.raises(OverrideError, match="line 2"):
        verify_override()


def test_unreadable_dispatch_source_fails_loudly(monkeypatch):
    monkeypatch.setattr(registration, "_module_source", lambda name: None)
    with pytest.raises(OverrideError, match="cannot read"):
        verify_override()


@pytest.mark.parametrize("value,enabled", [(None, True), ("1", True), ("0", False),
                                           ("false", False), (" Off ", False), ("no", False)])
def test_override_switch(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv(registration.ENV_OVERRIDE, raising=False)
    else:
        monkeypatch.setenv(registration.ENV_OVERRIDE, value)
    assert registration.override_enabled() is enabled


# A LiteLLM whose dispatch structure changed, simulated in a fresh interpreter.
BREAK_LITELLM = """
import litellm
litellm.openai_compatible_providers = tuple(litellm.openai_compatible_providers)
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    root = str(Path(__file__).resolve().parents[2])
    full_env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env,
                "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_import_fails_loudly_on_an_unexpected_litellm():
    proc = _python(BREAK_LITELLM + "import litellm_dmr\n")
    assert proc.returncode != 0
    assert "OverrideError" in proc.stderr and "LITELLM_DMR_OVERRIDE_BUILTIN=0" in proc.stderr


def test_opt_out_registers_only_dmr_and_leaves_the_builtin_alone():
    proc = _python("""
import litellm
import litellm_dmr
names = sorted(e["provider"] for e in litellm.custom_provider_map)
print(names, "docker_model_runner" in litellm.openai_compatible_providers)
""", LITELLM_DMR_OVERRIDE_BUILTIN="0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['dmr'] True"


def test_embedding_params_accepted_for_docker_model_runner():
    params = get_optional_params_embeddings(
        model="ai/smollm2", encoding_format="base64", dimensions=8, user="u",
        custom_llm_provider="docker_model_runner")
    assert params == {"encoding_format": "base64", "dimensions": 8, "user": "u"}
    # Other providers keep LiteLLM's own lookup.
    assert ProviderConfigManager.get_provider_embedding_config(
        model="x", provider=LlmProviders.OPENAI) is None
    assert ProviderConfigManager.get_provider_embedding_config(
        model="x", provider=LlmProviders.VOYAGE) is not None


def test_image_params_kept_for_docker_model_runner():
    """Without a config LiteLLM silently drops size/n/... for custom providers.

    images.main looks the config up this way and hands it to get_optional_params_image_gen.
    """
    config = ProviderConfigManager.get_provider_image_generation_config(
        model="ai/sd", provider=LlmProviders.DOCKER_MODEL_RUNNER)
    params = get_optional_params_image_gen(
        model="ai/sd", n=1, size="256x256", response_format="b64_json",
        custom_llm_provider="docker_model_runner", provider_config=config)
    assert params == {"n": 1, "size": "256x256", "response_format": "b64_json"}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_zero_cost_registration_is_quiet_and_keeps_existing_prices():
    records = _Records()
    lite_logger = logging.getLogger("LiteLLM")
    lite_logger.addHandler(records)
    try:
        litellm.model_cost["docker_model_runner/ai/priced"] = {
            "input_cost_per_token": 1.0, "output_cost_per_token": 2.0,
            "litellm_provider": "docker_model_runner", "mode": "chat"}
        ensure_zero_cost("docker_model_runner", ["ai/unit-test-model", "ai/priced"])
        ensure_zero_cost("docker_model_runner", ["ai/unit-test-model"])
    finally:
        lite_logger.removeHandler(records)
        litellm.model_cost.pop("docker_model_runner/ai/priced", None)
    entry = litellm.model_cost["docker_model_runner/ai/unit-test-model"]
    assert entry["input_cost_per_token"] == 0.0 and entry["output_cost_per_token"] == 0.0
    assert not [m for m in records.messages if "register_model" in m]
    info = litellm.get_model_info("docker_model_runner/ai/unit-test-model")
    assert info["input_cost_per_token"] == 0.0
