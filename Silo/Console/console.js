// The TauCluster console: a chat playground over the OpenAI-compatible API and live views of the cluster and its
// domains, polled from the silo's /api. No framework and no build step: the silo serves this file as it is.
"use strict";

const $ = id => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("tau-api-key") ?? "",
  messages: [],            // the conversation the session holds, resent whole: the session reuses what it has
  reply: null,             // the AbortController of the reply streaming now
  view: "chat",
  timer: null,
};
const refreshMs = { cluster: 1000, domains: 5000 };

class ApiFailure extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Every call goes through here: the key, when there is one, and OpenAI's error shape turned into an ApiFailure.
async function api(path, { json, ...options } = {}) {
  const headers = { ...(options.headers ?? {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).error?.message ?? message; } catch { /* not JSON: keep the status line */ }
  if (response.status === 401) showLogin(state.key ? "That key was not accepted." : "");
  throw new ApiFailure(response.status, message);
}

async function getJson(path) { return (await api(path)).json(); }

// --- the key ---------------------------------------------------------------------------------------------------

function showLogin(message) {
  $("login").hidden = false;
  $("views").hidden = true;
  $("login-error").textContent = message;
  stopRefreshing();
}

async function signIn(event) {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  sessionStorage.setItem("tau-api-key", state.key);
  await start();
}

// --- chat ------------------------------------------------------------------------------------------------------

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return "web-" + Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
}

function number(id) { return Number($(id).value); }

// The request's sampling fields: OpenAI's, and TauCluster's (top_k, min_p, repetition_penalty) only when they do something.
function sampling() {
  const fields = {
    temperature: number("temperature"), top_p: number("top_p"), max_tokens: number("max_tokens"), seed: number("seed"),
    presence_penalty: number("presence_penalty"), frequency_penalty: number("frequency_penalty"),
  };
  if (number("top_k") > 0) fields.top_k = number("top_k");
  if (number("min_p") > 0) fields.min_p = number("min_p");
  if (number("repetition_penalty") !== 1) fields.repetition_penalty = number("repetition_penalty");
  return fields;
}

function addTurn(role, text) {
  const item = document.createElement("li");
  item.className = `turn ${role}`;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("transcript").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function addFigures(turn, figures) {
  const line = document.createElement("div");
  line.className = "figures";
  line.textContent = figures;
  turn.append(line);
}

// Server-sent events from a fetch: "data: {json}" blocks, separated by a blank line, until "data: [DONE]".
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value;
  if (!text.trim() || state.reply) return;
  $("chat-input").value = "";
  $("chat-error").textContent = "";
  state.messages.push({ role: "user", content: text });
  addTurn("user", text);
  const turn = addTurn("assistant", "");
  const output = turn.querySelector(".text");
  const keep = $("keep-session").checked;
  const session = $("session-id").value.trim();
  const request = { model: $("model").value, messages: state.messages, stream: true, stream_options: { include_usage: true }, ...sampling() };
  if (keep) request.session = session;
  if ($("domain").value) request.domain = $("domain").value;

  state.reply = new AbortController();
  setBusy(true);
  let reply = "", usage = null, finish = null;
  try {
    const response = await api("/v1/chat/completions", { method: "POST", json: request, signal: state.reply.signal });
    for await (const chunk of events(response)) {
      if (chunk.error) throw new ApiFailure(chunk.error.code, chunk.error.message);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) {
        reply += choice.delta.content;
        output.textContent = reply;
        turn.dataset.chunks = String(Number(turn.dataset.chunks ?? 0) + 1);   // how the text arrived: in pieces, as it streamed
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    state.messages.push({ role: "assistant", content: reply });
    turn.dataset.finished = finish ?? "";
    const figures = [];
    if (usage) figures.push(`${usage.prompt_tokens} prompt tokens (${usage.prompt_tokens_details?.cached_tokens ?? 0} cached), ${usage.completion_tokens} generated`);
    if (finish) figures.push(`finish: ${finish}`);
    if (keep) {
      const info = await getJson(`/v1/sessions/${encodeURIComponent(session)}`);
      figures.push(`session ${info.session}: ${info.length} tokens on ${info.silo}, cache ${bytes(info.cache_bytes)} `
        + `against ${bytes(info.baseline_cache_bytes)} for (K, V)${info.shards ? `, ${info.shards} context shards` : ""}`);
    }
    addFigures(turn, figures.join(" · "));
  } catch (error) {
    if (error.name === "AbortError") {
      state.messages.push({ role: "assistant", content: reply });
      addFigures(turn, "stopped");
    } else {
      state.messages.pop();   // the turn failed: it is not part of the conversation
      turn.remove();
      $("chat-error").textContent = error.message;
    }
  } finally {
    state.reply = null;
    setBusy(false);
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
}

function newConversation(sessionId) {
  state.messages = [];
  $("transcript").replaceChildren();
  $("session-id").value = sessionId;
}

async function sessionAction(action) {
  $("chat-error").textContent = "";
  const session = $("session-id").value.trim();
  try {
    if (action === "fork") {
      const child = newSessionId();
      await api(`/v1/sessions/${encodeURIComponent(session)}/fork`, { method: "POST", json: { id: child } });
      $("session-id").value = child;   // the conversation goes on in the copy; the original stays as it was
      addTurn("note", `forked ${session} into ${child}: the conversation goes on in the copy`);
    } else if (action === "delete") {
      await api(`/v1/sessions/${encodeURIComponent(session)}`, { method: "DELETE" });
      newConversation(newSessionId());
    } else {
      newConversation(newSessionId());
    }
  } catch (error) {
    $("chat-error").textContent = error.message;
  }
}

// --- cluster and domains ---------------------------------------------------------------------------------------

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function cell(text, attributes = {}) {
  const td = document.createElement("td");
  td.textContent = text;
  for (const [name, value] of Object.entries(attributes)) td.setAttribute(name, value);
  return td;
}

function bytesCell(n, className) { return cell(bytes(n), { class: className, "data-bytes": String(n), title: `${n} bytes` }); }

function row(cells, attributes = {}) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  for (const [name, value] of Object.entries(attributes)) tr.setAttribute(name, value);
  return tr;
}

function renderCluster(cluster) {
  const t = cluster.totals;
  $("cluster-totals").textContent = `${t.silos} silos · ${t.sessions} live sessions · ${t.tokens_per_second.toFixed(1)} tokens/s · `
    + `cache ${bytes(t.cache_bytes)} against ${bytes(t.baseline_cache_bytes)} for (K, V) · ${t.shards} context shards (${bytes(t.shard_bytes)})`;
  $("cluster-silos").tBodies[0].replaceChildren(...cluster.silos.map(s => {
    const b = s.batch;
    const cells = s.error
      ? [cell(s.silo), cell(`unreachable: ${s.error}`, { colspan: "8", class: "error" })]
      : [cell(s.silo), cell(s.device), cell(String(s.sessions.length)), cell(s.tokens_per_second.toFixed(1)),
         bytesCell(s.cache_bytes, "cache-bytes"), bytesCell(s.baseline_cache_bytes, "baseline-bytes"),
         cell(`${s.shards.length} (${bytes(s.shards.reduce((sum, x) => sum + x.bytes, 0))})`),
         cell(`${b.waiting} · ${b.last} · ${b.largest} · ${b.passes ? (b.lanes / b.passes).toFixed(1) : "–"}`),
         cell(s.admission ? `${s.admission.running} · ${s.admission.waiting}${s.admission.admitting ? "" : " (draining)"}` : "–")];
    return row(cells, { "data-silo": s.silo });
  }));
  const shardSilos = new Map();   // session → the silos holding its context shards
  for (const s of cluster.silos)
    for (const shard of s.shards) shardSilos.set(shard.session, (shardSilos.get(shard.session) ?? new Set()).add(s.silo));
  const sessions = cluster.silos.flatMap(s => s.sessions.map(session => ({ ...session, silo: s.silo })));
  $("cluster-sessions").tBodies[0].replaceChildren(...sessions.map(s => row([
    cell(s.session, { class: "session" }), cell(s.model), cell(s.domain ?? "model's own"), cell(s.silo),
    cell(String(s.cached_tokens), { class: "cached-tokens" }), cell(s.tokens_per_second.toFixed(1)),
    bytesCell(s.cache_bytes, "cache-bytes"), bytesCell(s.baseline_cache_bytes, "baseline-bytes"),
    cell(s.shards ? `${s.shards} · ${[...(shardSilos.get(s.session) ?? [])].join(", ")}` : "–"),
  ], { "data-session": s.session })));
}

function histogram(spectrum) {
  const max = Math.log1p(Math.max(...spectrum.histogram_counts, 1));   // log heights: one crowded bin would flatten the rest
  const bars = document.createElement("span");
  bars.className = "histogram";
  bars.title = spectrum.histogram_counts.map((c, i) => `[${spectrum.histogram_edges[i].toPrecision(3)}, ${spectrum.histogram_edges[i + 1].toPrecision(3)}]: ${c}`).join("\n");
  for (const count of spectrum.histogram_counts) {
    const bar = document.createElement("span");
    bar.style.height = `${Math.max(1, Math.round(24 * Math.log1p(count) / max))}px`;
    bars.append(bar);
  }
  const td = document.createElement("td");
  td.append(bars);
  return td;
}

function renderDomains(domains) {
  $("domains").tBodies[0].replaceChildren(...domains.data.map(d => {
    if (d.error) return row([cell(d.name), cell(d.error, { colspan: "9", class: "error" })], { "data-domain": d.name });
    const i = d.info, s = d.spectrum;
    return row([cell(d.name), cell(String(i.version)), cell(String(i.dimension)), cell(String(i.non_zeros)), cell(i.taumode ?? "–"),
      cell(i.source), cell(`${s.smallest.toPrecision(3)} · ${s.fiedler.toPrecision(3)} · ${s.largest.toPrecision(4)}`),
      cell(String(s.connected_components)), histogram(s), cell(d.sessions.join(", ") || "–", { class: "sessions" })], { "data-domain": d.name });
  }));
  const picker = $("domain"), chosen = picker.value;
  picker.replaceChildren(new Option("the model's own", ""), ...domains.data.filter(d => !d.error).map(d => new Option(`${d.name} (${d.info.dimension})`, d.name)));
  picker.value = chosen;
}

async function refresh() {
  try {
    if (state.view === "cluster") renderCluster(await getJson("/api/cluster"));
    if (state.view === "domains") renderDomains(await getJson("/api/domains"));
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = error.message;
    if (error.status === 401) return;
  }
  if (state.view in refreshMs) state.timer = setTimeout(refresh, refreshMs[state.view]);
}

function stopRefreshing() {
  clearTimeout(state.timer);
  state.timer = null;
}

function show(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  stopRefreshing();
  refresh();
}

// --- start -----------------------------------------------------------------------------------------------------

async function start() {
  try {
    const [models, domains] = await Promise.all([getJson("/v1/models"), getJson("/api/domains")]);
    $("login").hidden = true;
    $("views").hidden = false;
    $("model").replaceChildren(...models.data.map(m => new Option(`${m.id} · ${m.max_model_len}`, m.id)));
    renderDomains(domains);
    show(state.view);
  } catch (error) {
    if (error.status !== 401) $("status").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("session-id").value = newSessionId();
  $("login").addEventListener("submit", signIn);
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", e => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.reply?.abort());
  $("new-session").addEventListener("click", () => sessionAction("new"));
  $("fork-session").addEventListener("click", () => sessionAction("fork"));
  $("delete-session").addEventListener("click", () => sessionAction("delete"));
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  start();
});
