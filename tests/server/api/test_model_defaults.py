"""Model defaults: what a request gets when it says nothing, from the model card, the model's own
settings (Ollama create) and `dmr configure`'s runtime flags; and every documented runtime flag
accepted and effective (DMR's "Runtime flags" tables and "Configuration presets")."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import anthropic
import ollama
import pytest
import requests

from tests.conftest import MODEL, NO_EOS, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of our own (its models are created and configured here), one slot per model:
    the long-document preset asks for a 32768-token context."""
    base = tmp_path_factory.mktemp("defaults")
    process = ServerProcess(base / "models", base / "server.log", env={"DMR_PARALLEL": "1"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def url(server):
    yield server.url
    requests.post(server.url + "/engines/unload", json={"all": True}, timeout=60)


_made = iter(range(1000))


def new_model(url: str, **create) -> str:
    """A model of its own (its own ID, so its configuration touches nothing else)."""
    name = f"ai/defaults-{next(_made)}"
    r = requests.post(url + "/api/create", timeout=60,
                      json={"model": name, "from": MODEL, "stream": False, **create})
    assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    return name


def configure(url: str, model: str, flags: list[str], **extra) -> requests.Response:
    return requests.post(url + "/engines/_configure", timeout=60,
                         json={"model": model, "runtime-flags": flags, **extra})


def wait_loaded(url: str, model: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in requests.get(url + "/engines/ps", timeout=10).json():
            if entry["model_name"] in (model, f"{model}:latest") and not entry.get("loading"):
                return entry
        time.sleep(0.3)
    raise AssertionError(f"{model} never loaded")


def chat(url: str, model: str, content: str = "Tell me a story.", **extra) -> dict:
    r = requests.post(url + "/engines/v1/chat/completions", timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": content}], **extra})
    assert r.status_code == 200, r.text
    return r.json()


def defaults_of(url: str, model: str) -> dict:
    return requests.get(f"{url}/models/{model}", timeout=10).json()["defaults"]


# ------------------------------------------------------------------------------ shown


def test_bundled_model_has_its_card_defaults_everywhere(server_url):
    shown = defaults_of(server_url, MODEL)
    assert shown["temperature"] == {"value": 0.2, "source": "card"}
    assert shown["top_p"] == {"value": 0.9, "source": "card"}
    assert shown["max_tokens"]["source"] == "card"
    parameters = ollama.Client(host=server_url).show(MODEL).parameters
    assert any(line.split() == ["temperature", "0.2"] for line in parameters.splitlines())
    openai_view = requests.get(f"{server_url}/engines/v1/models/{MODEL}", timeout=10).json()
    assert openai_view["dmr"]["defaults"]["top_p"] == 0.9


def test_say_hello_in_french_ends_by_itself(server_url):
    """`dmr run ai/smollm2 "Say hello in French."` with no options: a short answer that ends
    (it used to run for thousands of tokens)."""
    env = {**os.environ, "MODEL_RUNNER_HOST": server_url}
    lengths = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-m", "server.cli", "run", MODEL,
                               "Say hello in French."], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        answer = done.stdout.strip()
        assert answer
        r = requests.post(server_url + "/engines/v1/completions", timeout=30,
                          json={"model": MODEL, "prompt": answer, "max_tokens": 0})
        lengths.append(r.json()["usage"]["prompt_tokens"])
    cap = defaults_of(server_url, MODEL)["max_tokens"]["value"]
    assert max(lengths) <= cap and statistics.median(lengths) < 100, lengths


# ------------------------------------------------------------------------------ applied


def test_defaults_fill_only_what_the_request_leaves_out(url):
    model = new_model(url, parameters={"temperature": 0, "num_predict": 12})
    greedy = chat(url, model, logit_bias=NO_EOS)
    assert greedy["usage"]["completion_tokens"] == 12  # the default max_tokens
    assert chat(url, model, logit_bias=NO_EOS, max_tokens=5)["usage"]["completion_tokens"] == 5
    again = chat(url, model, logit_bias=NO_EOS, seed=7)
    explicit = chat(url, model, logit_bias=NO_EOS, temperature=0)
    text = greedy["choices"][0]["message"]["content"]
    assert again["choices"][0]["message"]["content"] == text  # temperature 0 by default
    assert explicit["choices"][0]["message"]["content"] == text
    hot = {chat(url, model, logit_bias=NO_EOS, temperature=2.0, seed=s)["choices"][0]
           ["message"]["content"] for s in range(3)}
    assert hot - {text}  # the request's own temperature wins
    reply = ollama.Client(host=url).chat(model=model, messages=[
        {"role": "user", "content": "Write a very long story about a dragon."}])
    assert reply.eval_count <= 12 and reply.done_reason in ("length", "stop")
    claude = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    first, second = (claude.messages.create(
        model=model, max_tokens=12, messages=[{"role": "user", "content": "Tell me a story."}])
        for _ in range(2))
    assert first.content[0].text == second.content[0].text  # temperature 0 by default


def test_system_and_stop_defaults(url):
    system = "You are a pirate. Answer like a pirate."
    model = new_model(url, system=system, parameters={"stop": ["e"], "num_predict": 60})
    shown = requests.post(url + "/api/show", json={"model": model}, timeout=10).json()
    assert shown["system"] == system and f'SYSTEM """{system}"""' in shown["modelfile"]
    assert 'stop                           "e"' in ollama.Client(host=url).show(model).parameters
    with_default = chat(url, model, "Hello")
    explicit = requests.post(url + "/engines/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 1, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": "Hello"}]}).json()
    assert with_default["usage"]["prompt_tokens"] == explicit["usage"]["prompt_tokens"]
    content = with_default["choices"][0]["message"]["content"]
    assert "e" not in content and with_default["choices"][0]["finish_reason"] == "stop"
    own_stop = chat(url, model, "Hello", stop=["zzz"], max_tokens=20)
    assert "zzz" not in own_stop["choices"][0]["message"]["content"]


# ------------------------------------------------------------------------------ runtime flags

#: Every flag of DMR's "Runtime flags" tables, with a value.
DOCUMENTED = [["--temp", "0.7"], ["--top-k", "40"], ["--top-p", "0.9"], ["--min-p", "0.05"],
              ["--repeat-penalty", "1.1"], ["--threads", "1"], ["--threads-batch", "1"],
              ["--batch-size", "512"], ["--mlock"], ["--no-mmap"], ["--n-gpu-layers", "20"],
              ["--main-gpu", "0"], ["--split-mode", "layer"], ["--rope-scaling", "linear"],
              ["--rope-freq-base", "100000"], ["--rope-freq-scale", "1"],
              ["--no-prefill-assistant"], ["--reasoning-budget", "0"]]

#: DMR's "Configuration presets", as written (context_size, runtime_flags).
PRESETS = {
    "code completion": (4096, ["--temp", "0.1", "--top-k", "1", "--batch-size", "1024"]),
    "chat assistant": (8192, ["--temp", "0.7", "--top-p", "0.9", "--repeat-penalty", "1.1"]),
    "creative writing": (8192, ["--temp", "1.2", "--top-p", "0.95", "--repeat-penalty", "1.0"]),
    "long documents": (32768, ["--mlock", "--batch-size", "2048"]),
    "low memory": (2048, ["--threads", "4"]),
}


def test_every_documented_flag_is_accepted(url):
    model = new_model(url)
    for flag in DOCUMENTED:
        r = configure(url, model, flag)
        assert r.status_code == 202, (flag, r.text)
        if flag[0] in ("--n-gpu-layers", "--main-gpu", "--split-mode"):
            assert "no effect" in r.text and "GPU" in r.text
    every = [part for flag in DOCUMENTED for part in flag]
    assert configure(url, model, every).status_code == 202
    entry = wait_loaded(url, model)
    settings = entry["settings"]
    assert settings["mlock"] is True and settings["mmap"] is False
    assert settings["rope_scaling"] == "linear" and settings["n_gpu_layers"] == 20
    assert defaults_of(url, model)["temperature"] == {"value": 0.7, "source": "configured"}
    bad = configure(url, model, ["--flash-attn"])
    assert bad.status_code == 400 and "--flash-attn" in bad.text and "--temp" in bad.text
    assert configure(url, model, ["--temp", "hot"]).status_code == 400
    assert configure(url, model, ["--split-mode", "diagonal"]).status_code == 400


@pytest.mark.parametrize("preset", list(PRESETS))
def test_configuration_presets_work_as_written(url, preset):
    context, flags = PRESETS[preset]
    model = new_model(url)
    r = configure(url, model, flags, **{"context-size": context})
    assert r.status_code == 202, r.text
    entry = wait_loaded(url, model)
    assert entry["context_size"] == context
    parsed = dict(zip(flags[::2], flags[1::2], strict=False))
    if "--batch-size" in flags:
        assert entry["settings"]["n_batch"] == int(flags[flags.index("--batch-size") + 1])
    if "--mlock" in flags:
        assert entry["settings"]["mlock"] is True
        status = open(f"/proc/{entry['runner_pid']}/status").read()
        locked = int(next(line.split()[1] for line in status.splitlines()
                          if line.startswith("VmLck")))
        assert locked > 0  # the weights really are locked in RAM
    if "--threads" in flags:  # 4 on a server allowed fewer: accepted, cut, and said so
        assert "using" in r.text or entry["settings"]["threads"] == 4
        assert entry["settings"]["threads"] <= 4
    if "--temp" in parsed:
        assert defaults_of(url, model)["temperature"]["value"] == float(parsed["--temp"])
    assert chat(url, model, max_tokens=4)["usage"]["completion_tokens"] >= 1


def test_engine_flags_take_effect(url):
    model = new_model(url)
    base = chat(url, model, "Count to ten.", temperature=0, max_tokens=16, logit_bias=NO_EOS)
    maps_before = open(f"/proc/{wait_loaded(url, model)['runner_pid']}/maps").read()
    assert configure(url, model, ["--no-mmap", "--rope-freq-scale", "0.5"]).status_code == 202
    entry = wait_loaded(url, model)
    assert entry["settings"]["mmap"] is False
    maps_after = open(f"/proc/{entry['runner_pid']}/maps").read()
    assert "blobs/sha256" in maps_before and "blobs/sha256" not in maps_after  # the weights
    scaled = chat(url, model, "Count to ten.", temperature=0, max_tokens=16, logit_bias=NO_EOS)
    assert scaled["choices"][0]["message"]["content"] != base["choices"][0]["message"]["content"]


def test_no_prefill_assistant(url):
    model = new_model(url)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]

    def prompt_tokens() -> int:
        r = requests.post(url + "/engines/v1/chat/completions", timeout=60, json={
            "model": model, "max_tokens": 1, "messages": messages})
        return r.json()["usage"]["prompt_tokens"]

    continued = prompt_tokens()
    assert configure(url, model, ["--no-prefill-assistant"]).status_code == 202
    wait_loaded(url, model)
    assert prompt_tokens() > continued  # the turn is closed and a new one opened


def test_cli_runtime_flag_form(url):
    """DMR's documented form, which argparse alone refuses (the value starts with "-")."""
    model = new_model(url)
    env = {**os.environ, "MODEL_RUNNER_HOST": url}
    done = subprocess.run([sys.executable, "-m", "server.cli", "configure", "--runtime-flag",
                           "--temp", "--runtime-flag", "0.3", "--runtime-flag", "-n",
                           "--runtime-flag", "9", model], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and "Configured" in done.stdout, done.stderr
    shown = json.loads(subprocess.run([sys.executable, "-m", "server.cli", "inspect", model],
                                      capture_output=True, text=True, env=env,
                                      timeout=60).stdout)["defaults"]
    assert shown["temperature"] == {"value": 0.3, "source": "configured"}
    assert shown["max_tokens"] == {"value": 9, "source": "configured"}
    assert chat(url, model, logit_bias=NO_EOS)["usage"]["completion_tokens"] == 9
