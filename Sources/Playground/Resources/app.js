// The playground's controller: settings (models, panel, judge, parameters), the conversation,
// the gateway key, and one streamed deliberation at a time.
//
// Modules: sse.js (SSE parser) → api.js (HTTP) → run.js (state of a turn, from events) →
// view.js, timeline.js, text.js, dom.js (drawing, text only through text nodes).

import { APIError, AuthError, GatewayClient, describeModels } from "./api.js";
import { h, isolated } from "./dom.js";
import { Run } from "./run.js";
import { TurnView } from "./view.js";

/** Offered as `preset` when the gateway's model list does not describe its presets. */
const FALLBACK_PRESETS = ["quality", "budget", "research"];
const MAX_PANEL = 8;

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $("connection"), keyButton: $("key-button"), settings: $("settings"),
  outer: $("outer-model"), always: $("always-deliberate"), presets: $("presets"), panelCount: $("panel-count"),
  panelSummary: $("panel-summary"), filter: $("model-filter"), models: $("panel-models"), customModel: $("custom-model"),
  addModel: $("add-model"), judge: $("judge-model"), maxToolCalls: $("max-tool-calls"), webSearch: $("web-search"),
  judgeWebSearch: $("judge-web-search"), minAnswers: $("min-answers"), graceMs: $("grace-ms"), preview: $("request-preview"),
  thread: $("thread"), welcome: $("welcome"), composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  newChat: $("new-chat"), historyNote: $("history-note"), announcer: $("announcer"),
  keyDialog: $("key-dialog"), keyForm: $("key-form"), keyInput: $("key-input"), keyCancel: $("key-cancel"), keyReason: $("key-reason"),
};

const client = new GatewayClient(sessionStorage);
const state = {
  models: [],            // [{id, description}] for the pickers
  presets: null,         // {name: [models]} when the gateway lists them, else null
  defaultPreset: null,
  panel: new Set(),      // checked models
  preset: null,          // the preset the panel came from (sent as `preset` while unchanged)
  history: [],           // [{role, content}] of finished turns
  current: null,         // {run, view, controller}
  pendingAfterKey: null, // what to retry once a key is entered
};

// ---------------------------------------------------------------- models, presets, pickers

async function loadModels() {
  setConnection("loading", "Connecting…");
  let list;
  try {
    list = await client.models();
  } catch (error) {
    if (error instanceof AuthError) {
      client.key = ""; // refused: forget it
      askForKey(error.message, loadModels);
      setConnection("auth", "Key needed");
      ui.keyButton.hidden = false; // a cancelled prompt can be opened again (review 62E L1)
      return;
    }
    setConnection("error", "Gateway unreachable");
    announce(`Could not list the models: ${error.message}`);
    return;
  }
  Object.assign(state, describeModels(list));
  fillPickers();
  renderPresets();
  if (state.defaultPreset) choosePreset(state.defaultPreset);
  renderPanelState();
  setConnection("ok", `${state.models.length} models`);
  ui.keyButton.hidden = !client.key;
  document.body.dataset.ready = "true";
}

function fillPickers() {
  const outerChoice = ui.outer.value || "fusion";
  const judgeChoice = ui.judge.value;
  ui.outer.replaceChildren(h("option", { value: "fusion", text: "fusion (gateway default)" }),
    ...state.models.map((m) => h("option", { value: m.id, text: m.id })));
  ui.outer.value = outerChoice;
  // Unset, the gateway picks: the preset's judge, else your model (review 72C: "same as your
  // model" was wrong whenever a preset names a judge).
  ui.judge.replaceChildren(h("option", { value: "", text: "gateway default (the preset's judge, else your model)" }),
    ...state.models.map((m) => h("option", { value: m.id, text: m.id })));
  ui.judge.value = judgeChoice;
  ui.models.querySelectorAll(".model-option").forEach((n) => n.remove());
  for (const m of state.models) addModelOption(m.id, m.description);
  // Models added by name (with options) stay on offer.
  for (const id of state.panel) if (!state.models.some((m) => m.id === id)) addModelOption(id);
}

function addModelOption(id, description = "") {
  const box = h("input", { type: "checkbox", value: id, checked: state.panel.has(id), onChange: onPanelToggle });
  const label = h("label", { class: "model-option", title: description || id, dataset: { model: id } }, box, h("span", { text: id }));
  ui.models.append(label);
  return box;
}

function renderPresets() {
  const names = state.presets ? Object.keys(state.presets) : FALLBACK_PRESETS;
  const buttons = [h("button", { type: "button", class: "preset", dataset: { preset: "" }, text: "default", title: "The gateway's default panel", onClick: () => choosePreset(null) })];
  for (const name of names) {
    const members = state.presets?.[name];
    buttons.push(h("button", {
      type: "button", class: "preset", dataset: { preset: name }, text: name,
      title: members ? members.map(isolated).join(", ") : `The gateway's '${name}' preset`, onClick: () => choosePreset(name),
    }));
  }
  ui.presets.replaceChildren(...buttons);
}

/** A preset in one click: its members checked when known, else the name sent as `preset`. */
function choosePreset(name) {
  state.preset = name;
  state.panel = new Set(name && state.presets ? state.presets[name] || [] : []);
  for (const model of state.panel) if (!ui.models.querySelector(`[data-model="${CSS.escape(model)}"]`)) addModelOption(model);
  syncChecks();
  renderPanelState();
}

function onPanelToggle(event) {
  const box = event.target;
  if (box.checked) state.panel.add(box.value); else state.panel.delete(box.value);
  if (state.preset && !(state.presets && sameSet(state.panel, state.presets[state.preset] || []))) state.preset = null;
  renderPanelState();
}

function syncChecks() {
  for (const box of ui.models.querySelectorAll("input[type=checkbox]")) box.checked = state.panel.has(box.value);
}

function renderPanelState() {
  const full = state.panel.size >= MAX_PANEL;
  for (const box of ui.models.querySelectorAll("input[type=checkbox]")) box.disabled = full && !box.checked;
  for (const button of ui.presets.children) {
    const active = (button.dataset.preset || null) === state.preset && (state.preset !== null || state.panel.size === 0);
    button.setAttribute("aria-pressed", String(active));
  }
  ui.panelCount.textContent = state.panel.size ? `${state.panel.size}/${MAX_PANEL} selected` : "";
  const names = [...state.panel].map(isolated).join(", ");
  if (state.panel.size) ui.panelSummary.textContent = state.preset ? `Preset ${state.preset}: ${names}` : `Custom panel: ${names}`;
  else ui.panelSummary.textContent = state.preset ? `Preset ${state.preset}, members chosen by the gateway.` : "The gateway's default panel.";
  renderPreview();
}

function filterModels() {
  const needle = ui.filter.value.trim().toLowerCase();
  for (const label of ui.models.querySelectorAll(".model-option")) label.hidden = needle !== "" && !label.dataset.model.toLowerCase().includes(needle);
}

function addCustomModel() {
  const id = ui.customModel.value.trim();
  if (!id) return;
  let box = ui.models.querySelector(`[data-model="${CSS.escape(id)}"] input`);
  if (!box) box = addModelOption(id);
  if (!box.checked && state.panel.size < MAX_PANEL) { box.checked = true; box.dispatchEvent(new Event("change")); }
  ui.customModel.value = "";
}

// ---------------------------------------------------------------- the request

/** The fusion tool's parameters from the controls; empty fields are not sent. */
function fusionParameters() {
  const p = {};
  if (state.panel.size > 0 && state.preset === null) p.analysis_models = [...state.panel];
  else if (state.preset) p.preset = state.preset;
  if (ui.judge.value) p.model = ui.judge.value;
  const int = (input) => (input.value.trim() === "" ? null : Number.parseInt(input.value, 10));
  const maxToolCalls = int(ui.maxToolCalls);
  if (Number.isFinite(maxToolCalls)) p.max_tool_calls = maxToolCalls;
  if (ui.webSearch.value) p.web_search = ui.webSearch.value === "true";
  if (ui.judgeWebSearch.value) p.judge_web_search = ui.judgeWebSearch.value === "true";
  const minAnswers = int(ui.minAnswers);
  if (Number.isFinite(minAnswers)) p.min_answers = minAnswers;
  const grace = int(ui.graceMs);
  if (Number.isFinite(grace)) p.grace_ms = grace;
  return p;
}

function requestBody(prompt) {
  return {
    model: ui.outer.value || "fusion",
    stream: true,
    stream_options: { include_fusion_events: true, include_usage: true },
    messages: [...state.history, { role: "user", content: prompt }],
    tools: [{ type: "fusion", parameters: fusionParameters() }],
    tool_choice: ui.always.checked ? "required" : "auto",
  };
}

function renderPreview() {
  const body = requestBody(ui.prompt.value.trim() || "…");
  body.messages = body.messages.length > 1 ? [`… ${body.messages.length - 1} earlier messages`, body.messages[body.messages.length - 1]] : body.messages;
  ui.preview.textContent = JSON.stringify(body, null, 2);
}

// ---------------------------------------------------------------- a turn

async function send(prompt) {
  if (state.current?.run.running) return;
  ui.welcome.hidden = true;
  // Earlier turns keep their answer; their deliberation folds away.
  for (const turn of ui.thread.querySelectorAll(".turn")) turn.classList.add("earlier");
  const body = requestBody(prompt);
  const run = new Run(prompt, body);
  const view = new TurnView(run, announce, (id) => client.generation(id));
  const controller = new AbortController();
  state.current = { run, view, controller };
  ui.thread.append(view.root);
  view.root.scrollIntoView({ block: "start", behavior: "smooth" });
  setRunning(true);
  schedule();
  announce("Sent. The panel is starting.");
  try {
    const { done } = await client.streamChat(body, {
      signal: controller.signal,
      onResponse: ({ generationId }) => { run.generationId = generationId; run.status = "running"; run.touch("totals"); schedule(); },
      onEvent: (name, data) => { run.onEvent(name, data); schedule(); },
      onChunk: (chunk) => { run.onChunk(chunk); schedule(); },
      onMalformed: (kind, data) => { run.notes.push(`unreadable ${kind}: ${data.slice(0, 80)}`); },
    });
    if (run.status !== "failed") {
      if (!done) run.fail({ message: "The stream ended before [DONE]." });
      else run.finish();
    }
  } catch (error) {
    if (error.name === "AbortError") run.cancel();
    else if (error instanceof AuthError) {
      run.fail({ message: "The gateway refused the key." });
      client.key = "";
      // Once a key is given, this turn is sent again in place of the refused one.
      // The models were never listed without a key: list them too (review 62E L1).
      askForKey(error.message, () => {
        view.root.remove();
        ui.prompt.value = "";
        if (document.body.dataset.ready !== "true") loadModels();
        send(prompt);
      });
    } else if (error instanceof APIError) run.fail({ message: error.message, param: error.param });
    else run.fail({ message: error.message || String(error) });
  }
  if (run.status === "done" && run.final.text) {
    state.history.push({ role: "user", content: prompt }, { role: "assistant", content: run.final.text });
  }
  // A refused request gives its question back, to fix the settings and send again.
  if (run.status === "failed" && !ui.prompt.value) ui.prompt.value = prompt;
  setRunning(false);
  schedule();
  announce(run.status === "done" ? "Done." : run.status === "cancelled" ? "Stopped." : `Failed: ${run.error?.message || ""}`);
  renderHistoryNote();
  renderPreview();
}

function setRunning(running) {
  ui.send.disabled = running;
  ui.stop.hidden = !running;
  ui.newChat.disabled = running;
  document.body.dataset.running = String(running);
  if (!running) ui.prompt.focus();
}

function renderHistoryNote() {
  const turns = state.history.length / 2;
  ui.historyNote.textContent = turns ? `${turns} earlier turn${turns === 1 ? "" : "s"} sent as context` : "";
}

// Redraws ride animation frames, at most one per 40 ms (streaming text stays smooth, long
// answers are not re-laid out 60 times a second); while a run is live, clocks tick every 100 ms.
let frame = 0;
let lastDraw = -Infinity;
function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}
function draw(time) {
  frame = 0;
  const current = state.current;
  if (!current) return;
  const run = current.run;
  const due = run.dirty.has("all") || !run.running ? run.dirty.size > 0 : time - lastDraw >= (run.dirty.size > 0 ? 40 : 100);
  if (due) {
    lastDraw = time;
    current.view.update();
  }
  if (run.running || run.dirty.size > 0) schedule();
}

// ---------------------------------------------------------------- the key

/** Opens the key dialog; `retry` runs once a key is given (cancelling keeps the current one). */
function askForKey(reason, retry) {
  state.pendingAfterKey = retry;
  ui.keyReason.textContent = `${reason ? `${reason} ` : ""}The key stays in this tab (session storage) and is sent only to this gateway as Authorization: Bearer.`;
  ui.keyInput.value = "";
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
  ui.keyInput.focus();
}

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault(); // never a real form submission (the CSP allows none anyway)
  // Invisible characters a paste brings (zero-width spaces, a BOM) are dropped; anything else a
  // header cannot carry is refused here, not left to fail every call as "Gateway unreachable"
  // (review 72C: the page was stuck until a new tab).
  const key = ui.keyInput.value.replace(/[\u200B-\u200D\u2060\uFEFF]/g, "").trim();
  if (!key) { ui.keyInput.focus(); return; }
  if (!/^[\x21-\x7E]+$/.test(key)) {
    ui.keyReason.textContent = "That key has characters an HTTP header cannot carry (spaces, accents, symbols beyond ASCII): paste it again.";
    ui.keyInput.focus();
    return;
  }
  client.key = key;
  ui.keyDialog.close();
  ui.keyButton.hidden = false;
  const retry = state.pendingAfterKey;
  state.pendingAfterKey = null;
  retry?.();
});
ui.keyCancel.addEventListener("click", () => ui.keyDialog.close());
ui.keyButton.addEventListener("click", () => askForKey("", loadModels));

// ---------------------------------------------------------------- wiring

function setConnection(kind, text) {
  ui.connection.dataset.state = kind;
  ui.connection.textContent = text;
}

function announce(text) {
  ui.announcer.textContent = text;
}

function sameSet(set, list) {
  return set.size === list.length && list.every((x) => set.has(x));
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim();
  if (!prompt || state.current?.run.running) return;
  ui.prompt.value = "";
  renderPreview();
  send(prompt);
});
// Enter sends, Shift+Enter starts a new line (not while an input method is composing).
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); ui.composer.requestSubmit(); }
});
ui.prompt.addEventListener("input", renderPreview);
ui.stop.addEventListener("click", () => state.current?.controller.abort());
// Leaving the page ends its run: kept in the back/forward cache, the page's stream (and the
// deliberation the key pays for) ran on for a minute (review 72C).
window.addEventListener("pagehide", () => state.current?.controller.abort());
ui.newChat.addEventListener("click", () => {
  state.history = [];
  state.current = null;
  for (const turn of ui.thread.querySelectorAll(".turn")) turn.remove();
  ui.welcome.hidden = false;
  renderHistoryNote();
  renderPreview();
  ui.prompt.focus();
});
ui.settings.addEventListener("submit", (event) => event.preventDefault());
ui.settings.addEventListener("input", renderPreview);
ui.settings.addEventListener("change", renderPreview);
ui.filter.addEventListener("input", filterModels);
ui.addModel.addEventListener("click", addCustomModel);
ui.customModel.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); addCustomModel(); } });
for (const example of document.querySelectorAll(".example")) {
  example.addEventListener("click", () => { ui.prompt.value = example.textContent; renderPreview(); ui.prompt.focus(); });
}

renderPresets();
renderPanelState();
loadModels();
