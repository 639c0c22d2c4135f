"use strict";
// The litellm-dmr dashboard. Plain JavaScript, no dependencies; every call goes to this
// server's own API and sends the API key kept in the browser (localStorage), if any.

const $ = (selector) => document.querySelector(selector);
const KEY_STORAGE = "dmr-api-key";
const MAX_ROWS = 200;

// ---------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function bytes(n) {
  if (!Number.isFinite(n)) return "";
  for (const [unit, scale] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
    if (n >= scale) return `${(n / scale).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function pretty(text) {
  if (!text) return "";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function showStatus(text, error = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

// ---------------------------------------------------------------- the API, with the key

function takeKeyFromFragment() {
  // `/ui#key=...` (what `dmr serve` prints): keep the key, then drop it from the address bar.
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("key")) {
    localStorage.setItem(KEY_STORAGE, params.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function errorText(text) {
  try {
    const error = JSON.parse(text).error;
    return typeof error === "string" ? error : (error && error.message) || text;
  } catch { return text.trim(); }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok && !options.allowError) {
    const message = errorText(await response.text());
    if (response.status === 401) showStatus("The server needs an API key: enter it above.", true);
    throw new ApiError(response.status, message);
  }
  return response;
}

// Lines of a streamed body (NDJSON), as they arrive.
async function* lines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
    }
  }
  if (buffer) yield buffer;
}

// Server-sent events from a fetch (EventSource cannot send the key): onEvent(event, data).
async function readEvents(response, onEvent) {
  let event = "message";
  let data = [];
  for await (const line of lines(response)) {
    if (line === "") {
      if (data.length) onEvent(event, data.join("\n"));
      event = "message";
      data = [];
    } else if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
}

// ---------------------------------------------------------------- models

let models = [];

function contextOf(config) {
  const gguf = config.gguf || {};
  return config.context_size ?? gguf[`${gguf["general.architecture"]}.context_length`] ?? "";
}

async function loadModels() {
  models = await (await api("/models")).json();
  const rows = models.flatMap((m) => m.tags.map((tag) => el("tr", { "data-tag": tag },
    el("td", {}, tag), el("td", {}, m.config.parameters ?? ""), el("td", {}, m.config.quantization ?? ""),
    el("td", {}, contextOf(m.config)), el("td", {}, m.config.size ?? ""),
    el("td", {}, el("button", { className: "danger", type: "button",
                                onclick: () => deleteModel(tag, m.tags.length) }, "Delete")))));
  $("#models tbody").replaceChildren(...rows);
  if (!rows.length) {
    $("#models tbody").append(el("tr", {}, el("td", { className: "muted", colspan: "6" },
      "No models: pull one below.")));
  }
  const select = $("#chat-model");
  const chosen = select.value;
  select.replaceChildren(...models.filter((m) => m.tags.length)
    .map((m) => el("option", { value: m.tags[0] }, m.tags[0])));
  if (models.some((m) => m.tags.includes(chosen))) select.value = chosen;
}

async function deleteModel(tag, tags) {
  const question = tags > 1 ? `Remove the tag ${tag}? The model stays under its other ${tags - 1} tag(s).`
                            : `Delete ${tag} and its files from the model store?`;
  if (!confirm(question)) return;
  const response = await api(`/models/${encodeURI(tag)}`, { method: "DELETE", allowError: true });
  if (response.ok) showStatus(`Deleted ${tag}.`);
  else showStatus(`Delete failed: ${errorText(await response.text())}`, true);
  await loadModels();
}

async function pull(name) {
  const bar = $("#pull-bar");
  const text = $("#pull-text");
  $("#pull-progress").hidden = false;
  bar.value = 0;
  text.textContent = `Pulling ${name}...`;
  try {
    const response = await api("/models/create", {
      method: "POST", body: JSON.stringify({ from: name }),
      headers: { "Content-Type": "application/json", Accept: "application/json" } });
    for await (const line of lines(response)) {
      if (!line.trim()) continue;
      const message = JSON.parse(line);
      if (message.type === "progress" && message.layer?.size) bar.value = message.layer.current / message.layer.size;
      if (message.type === "error") throw new Error(message.message);
      text.textContent = message.message;
    }
    bar.value = 1;
  } catch (error) {
    text.textContent = `Pull failed: ${error.message}`;
  }
  await loadModels();
}

// ---------------------------------------------------------------- runners and engines

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

async function loadRunners() {
  const runners = await (await api("/engines/ps")).json();
  $("#runners tbody").replaceChildren(...runners.map((r) => el("tr", {},
    el("td", {}, r.model_name), el("td", {}, r.backend_name),
    el("td", { className: r.in_use ? "ok" : "" }, r.loading ? "loading" : r.in_use ? "in use" : "idle"),
    el("td", {}, r.keep_alive === "-1" ? "forever" : r.keep_alive ?? ""), el("td", {}, ago(r.last_used)),
    el("td", {}, r.context_size ?? ""),
    el("td", { title: "weights, and the KV cache's tokens in use / cells" },
       [bytes(r.size), r.kv_cache_size ? `KV ${r.kv_cache_tokens}/${r.kv_cache_size}` : ""].filter(Boolean).join(" + ")))));
  if (!runners.length) {
    $("#runners tbody").append(el("tr", {}, el("td", { className: "muted", colspan: "7" },
      "No model loaded: the first request loads one.")));
  }
}

async function loadEngines() {
  const engines = await (await api("/engines/status")).json();
  const running = Object.entries(engines).filter(([, text]) => text.startsWith("Running"));
  const absent = Object.keys(engines).filter((name) => !running.some(([n]) => n === name));
  $("#engines").textContent = [...running.map(([name, text]) => `${name}: ${text}`),
                               absent.length ? `not installed: ${absent.join(", ")}` : ""].filter(Boolean).join(" · ");
  const info = await (await api("/version")).json();
  $("#server").textContent = `${location.host} · version ${info.version}`;
}

// ---------------------------------------------------------------- charts from /metrics

const charts = {};
let previous = null;

async function pollMetrics() {
  const metrics = parsePrometheus(await (await api("/metrics")).text());
  const sum = (name) => (metrics[name] || []).reduce((a, b) => a + b, 0);
  const now = performance.now() / 1000;
  const tokens = sum("llamacpp:tokens_predicted_total") + sum("llamacpp:prompt_tokens_total");
  let rate = 0;
  if (previous && now > previous.time) rate = Math.max(0, (tokens - previous.tokens) / (now - previous.time));
  previous = { time: now, tokens };
  const queue = sum("llamacpp:requests_processing") + sum("llamacpp:requests_deferred");
  const kv = Math.max(0, ...(metrics["llamacpp:kv_cache_usage_ratio"] || [0])) * 100;
  charts.tps.push(rate);
  charts.queue.push(queue);
  charts.kv.push(kv);
  $("#tps-now").textContent = rate.toFixed(1);
  $("#queue-now").textContent = String(queue);
  $("#kv-now").textContent = kv.toFixed(1);
}

// ---------------------------------------------------------------- live requests

const records = new Map();

function promptOf(requestText) {
  try {
    const body = JSON.parse(requestText);
    let text = body.messages?.length ? body.messages[body.messages.length - 1].content : (body.prompt ?? body.input ?? "");
    if (Array.isArray(text)) text = text.map((part) => part.text ?? "").join(" ");
    return String(text).replace(/\s+/g, " ").slice(0, 80);
  } catch { return ""; }
}

function addRecord(record) {
  if (records.has(record.id)) return;
  records.set(record.id, record);
  const usage = record.usage ? `${record.usage.prompt_tokens} → ${record.usage.completion_tokens}` : "";
  const ok = record.status_code < 400 && !record.error;
  const row = el("tr", { "data-id": record.id, onclick: () => showRecord(record, row) },
    el("td", {}, new Date(record.timestamp * 1000).toLocaleTimeString()),
    el("td", {}, record.dialect || record.origin || ""), el("td", {}, record.model),
    el("td", {}, `${record.method} ${record.url}`),
    el("td", { className: ok ? "ok" : "bad" }, record.status_code),
    el("td", {}, record.latency_ms != null ? `${Math.round(record.latency_ms)} ms` : ""),
    el("td", {}, usage), el("td", { className: "wrap" }, promptOf(record.request)));
  const body = $("#requests tbody");
  const rows = [...body.children];
  const before = rows.find((r) => records.get(r.dataset.id)?.timestamp < record.timestamp);
  body.insertBefore(row, before || null);
  while (body.children.length > MAX_ROWS) {
    records.delete(body.lastElementChild.dataset.id);
    body.lastElementChild.remove();
  }
}

function showRecord(record, row) {
  for (const r of document.querySelectorAll("#requests tr.selected")) r.classList.remove("selected");
  row.classList.add("selected");
  $("#request-detail").hidden = false;
  $("#detail-title").textContent = `${record.method} ${record.url} · ${record.model} · ${record.status_code}`;
  $("#detail-request").textContent = pretty(record.request);
  $("#detail-answer-title").textContent = record.error ? "Error" : (record.stream ? "Answer (stream, rebuilt)" : "Answer");
  $("#detail-response").textContent = pretty(record.error || record.response);
}

async function followRequests() {
  for (;;) {
    try {
      const response = await api("/engines/requests?include_existing=true",
                                 { headers: { Accept: "text/event-stream" } });
      $("#live").textContent = "● following";
      await readEvents(response, (event, data) => {
        if (event !== "new_request" && event !== "existing_request") return;
        for (const group of JSON.parse(data)) group.records.forEach(addRecord);
      });
    } catch (error) {
      $("#live").textContent = `(not following: ${error.message})`;
    }
    if (!$("#live").textContent.startsWith("(")) $("#live").textContent = "(reconnecting)";
    await sleep(3000);
  }
}

// ---------------------------------------------------------------- the chat playground

let conversation = [];
let controller = null;

function bubble(role, text = "") {
  const node = el("div", { className: `msg ${role}` });
  const thinking = el("details", { className: "thinking", hidden: "", open: "" },
                      el("summary", {}, "Thinking"), el("div"));
  const content = el("div", { className: "content" }, text);
  const meta = el("span", { className: "meta" });
  node.append(...(role === "assistant" ? [thinking] : []), content, meta);
  $("#chat-log").append(node);
  return { node, thinking, content, meta };
}

function setBusy(busy) {
  $("#chat-send").disabled = busy;
  $("#chat-stop").disabled = !busy;
}

async function send(text) {
  conversation.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant");
  const system = $("#chat-system").value.trim();
  const body = {
    model: $("#chat-model").value, stream: true, stream_options: { include_usage: true },
    messages: [...(system ? [{ role: "system", content: system }] : []), ...conversation],
    temperature: Number($("#chat-temperature").value), max_tokens: Number($("#chat-max").value),
  };
  if ($("#chat-think").checked) body.reasoning_effort = "medium";
  let answer = "";
  let reasoning = "";
  controller = new AbortController();
  setBusy(true);
  const started = performance.now();
  try {
    const response = await api("/engines/v1/chat/completions", {
      method: "POST", body: JSON.stringify(body), signal: controller.signal,
      headers: { "Content-Type": "application/json" } });
    await readEvents(response, (event, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.reasoning_content) {
          reasoning += delta.reasoning_content;
          out.thinking.hidden = false;
          out.thinking.lastElementChild.textContent = reasoning;
        }
        if (delta.content) {
          answer += delta.content;
          out.content.textContent = answer;
        }
        if (choice.finish_reason) out.meta.dataset.finish = choice.finish_reason;
      }
      if (chunk.usage) {
        const seconds = (performance.now() - started) / 1000;
        out.meta.textContent = `${chunk.usage.completion_tokens} tokens in ${seconds.toFixed(1)} s`;
      }
      $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
    });
    out.node.dataset.done = "true";
  } catch (error) {
    if (error.name !== "AbortError") controller.abort();  // stop reading what is left
    out.meta.textContent = error.name === "AbortError" ? "stopped" : `error: ${error.message}`;
    out.node.dataset.done = error.name === "AbortError" ? "stopped" : "error";
  } finally {
    controller = null;
    setBusy(false);
    conversation.push({ role: "assistant", content: answer });
  }
}

// ---------------------------------------------------------------- start

async function every(ms, task) {
  for (;;) {
    try { await task(); } catch (error) { if (!(error instanceof ApiError)) showStatus(error.message, true); }
    await sleep(ms);
  }
}

function start() {
  takeKeyFromFragment();
  $("#key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    location.reload();
  });
  $("#pull-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pull($("#pull-name").value.trim());
  });
  $("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#chat-input").value.trim();
    if (!text || controller) return;
    $("#chat-input").value = "";
    send(text);
  });
  $("#chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("#chat-form").requestSubmit(); }
  });
  $("#chat-stop").addEventListener("click", () => controller && controller.abort());
  $("#chat-clear").addEventListener("click", () => { conversation = []; $("#chat-log").replaceChildren(); });
  charts.tps = new LineChart($("#chart-tps"), { color: "#2563eb" });
  charts.queue = new LineChart($("#chart-queue"), { color: "#d97706", format: (v) => v.toFixed(0) });
  charts.kv = new LineChart($("#chart-kv"), { color: "#7c3aed" });
  loadEngines().then(() => showStatus("")).catch(() => {});
  every(5000, loadModels);
  every(3000, loadRunners);
  every(2000, pollMetrics);
  followRequests();
}

start();
