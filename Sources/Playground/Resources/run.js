// The state of one deliberation (one turn of the conversation), built from the stream's events.
// Plain data and no DOM: the view reads it and redraws what `dirty` names.
//
// Times are on the gateway's clock: milliseconds since it received the request (the events'
// `t_ms`). Chunks of the final answer carry no time, so the page maps its own clock onto the
// gateway's with the smallest observed (arrival − t_ms).

import { isolated } from "./dom.js";
import { ANALYSIS_FIELDS, JudgeItemScanner } from "./judge-items.js";

export { ANALYSIS_FIELDS };

export const PHASES = ["outer", "panel", "judge", "final"];

export class Run {
  constructor(question, request) {
    this.question = question;
    this.request = request;
    this.status = "connecting"; // connecting | running | done | failed | cancelled
    this.error = null;          // {message, param}
    this.generationId = "";
    this.requestedAt = performance.now();
    this.clockOffset = null;
    this.endedAt = null;        // gateway clock
    this.toolCall = null;       // {t, arguments}
    this.members = [];          // by panel index
    this.judge = { model: "", attempts: [], raw: "", status: "waiting", web: [] };
    this.analysis = emptyAnalysis();
    this.analysisSource = null; // null | "scanner" | "items" | "final"
    this.scanner = null;
    this.result = null;         // the fusion.completed result
    this.phases = {};           // fusion.phase events by name
    this.estimate = null;       // {cost_min, cost_max}
    this.final = { model: "", startedAt: null, firstTokenAt: null, endedAt: null, text: "", preamble: "", reasoning: "", finishReason: null };
    this.citations = [];
    this.usage = null;
    this.notes = [];            // malformed or unknown input, shown small
    this.dirty = new Set(["all"]);
  }

  /** Milliseconds on the gateway's clock now (or at `at`, a performance.now() value). */
  now(at = performance.now()) {
    return at - (this.clockOffset ?? this.requestedAt);
  }

  /** Every event's t_ms refines the clock mapping (arrival is always after t_ms). */
  observe(t) {
    if (typeof t !== "number") return this.now();
    const offset = performance.now() - t;
    if (this.clockOffset === null || offset < this.clockOffset) this.clockOffset = offset;
    return t;
  }

  touch(...parts) { for (const part of parts) this.dirty.add(part); }

  member(index, model) {
    let m = this.members[index];
    if (!m) {
      m = this.members[index] = {
        index, model: model || "", status: "queued", text: "", reasoning: "", startedAt: null, firstTokenAt: null,
        endedAt: null, stats: null, failure: null, cut: null, web: [],
      };
    }
    if (model && !m.model) m.model = model;
    return m;
  }

  /** A named `fusion.*` event. Unknown ones are counted and otherwise ignored. */
  onEvent(name, data) {
    if (this.status === "connecting") this.status = "running";
    const t = this.observe(data.t_ms);
    switch (name) {
      case "fusion.tool.called":
        // Forced, the outer model made no call: the gateway called fusion itself (review 62E L4).
        this.toolCall = { t, arguments: data.arguments || "", forced: data.forced === true };
        this.touch("phase", "timeline");
        break;
      case "fusion.member.started": {
        const m = this.member(data.index, data.model);
        m.status = "running";
        m.startedAt = t;
        this.touch(`member:${m.index}`, "members", "phase", "timeline");
        break;
      }
      case "fusion.member.delta": {
        const m = this.member(data.index, data.model);
        if (m.firstTokenAt === null) m.firstTokenAt = t;
        m.text += data.delta || "";
        this.touch(`member:${m.index}`, "timeline");
        break;
      }
      case "fusion.member.reasoning": {
        const m = this.member(data.index, data.model);
        if (m.firstTokenAt === null) m.firstTokenAt = t;
        m.reasoning += data.delta || "";
        this.touch(`member:${m.index}`, "timeline");
        break;
      }
      case "fusion.member.completed": {
        const m = this.member(data.index, data.model);
        m.status = "done";
        m.endedAt = t;
        m.stats = data.stats || null;
        this.touch(`member:${m.index}`, "phase", "timeline");
        break;
      }
      case "fusion.member.failed": {
        const m = this.member(data.index, data.model);
        m.status = "failed";
        m.endedAt = t;
        m.failure = { reason: data.reason || "failed", message: data.message || "" };
        this.touch(`member:${m.index}`, "phase", "timeline");
        break;
      }
      case "fusion.member.cut": {
        const m = this.member(data.index, data.model);
        m.status = "cut";
        m.endedAt = t;
        m.cut = { reason: data.reason || "cut", characters: data.characters };
        this.touch(`member:${m.index}`, "phase", "timeline");
        break;
      }
      case "fusion.web.started":
      case "fusion.web.completed":
        this.onWeb(name === "fusion.web.started", data, t);
        break;
      case "fusion.judge.started":
        this.judge.model = data.model || this.judge.model;
        this.judge.status = "running";
        this.judge.attempts.push({ attempt: data.attempt || this.judge.attempts.length + 1, model: data.model || "", startedAt: t, firstTokenAt: null, endedAt: null, status: "running", failure: null });
        this.judge.raw = "";
        // A new attempt starts over, unless the gateway sends validated items itself.
        if (this.analysisSource !== "items") {
          this.analysis = emptyAnalysis();
          this.analysisSource = null;
          this.scanner = new JudgeItemScanner((field, item) => {
            if (this.analysisSource === "items") return;
            this.analysisSource = "scanner";
            this.analysis[field].push({ item, provisional: true });
            this.touch("analysis");
          });
        }
        this.touch("judge", "analysis", "phase", "timeline");
        break;
      case "fusion.judge.progress": {
        const attempt = this.currentAttempt();
        if (attempt && attempt.firstTokenAt === null) attempt.firstTokenAt = t;
        this.judge.raw += data.delta || "";
        this.scanner?.push(data.delta || "");
        this.touch("judge", "timeline");
        break;
      }
      case "fusion.judge.item":
        if (ANALYSIS_FIELDS.includes(data.field)) {
          if (this.analysisSource !== "items") { this.analysis = emptyAnalysis(); this.analysisSource = "items"; }
          this.analysis[data.field].push({ item: data.item, provisional: false });
          this.touch("analysis");
        }
        break;
      case "fusion.judge.item.withdrawn": {
        const list = this.analysis[data.field];
        if (list && Number.isInteger(data.index) && data.index >= 0 && data.index < list.length) {
          list.splice(data.index, 1);
          this.touch("analysis");
        }
        break;
      }
      case "fusion.judge.completed": {
        const attempt = this.currentAttempt();
        if (attempt) { attempt.status = "done"; attempt.endedAt = t; }
        this.judge.status = "done";
        this.setFinalAnalysis(data.analysis);
        this.touch("judge", "analysis", "phase", "timeline");
        break;
      }
      case "fusion.judge.failed": {
        const attempt = this.currentAttempt();
        if (attempt) { attempt.status = "failed"; attempt.endedAt = t; attempt.failure = { reason: data.reason, message: data.message, willRetry: !!data.will_retry }; }
        this.judge.status = data.will_retry ? "retrying" : "failed";
        // What the page read from a reply the gateway refused is not an analysis.
        if (this.analysisSource === "scanner") { this.analysis = emptyAnalysis(); this.analysisSource = null; }
        this.touch("judge", "analysis", "phase", "timeline");
        break;
      }
      case "fusion.completed":
        this.result = data.result || null;
        if (this.result?.analysis && this.analysisSource !== "final") this.setFinalAnalysis(this.result.analysis);
        // No analysis in the result: nothing read along the way stands (the banner says why).
        if (this.result && !this.result.analysis) { this.analysis = emptyAnalysis(); this.analysisSource = null; }
        if (this.judge.status === "running" || this.judge.status === "retrying") this.judge.status = this.result?.analysis ? "done" : "failed";
        this.touch("members", "judge", "analysis", "phase", "timeline");
        break;
      case "fusion.final":
        this.final.model = data.model || "";
        this.final.startedAt = t;
        this.final.firstTokenAt = null;
        this.final.endedAt = null;
        // What the outer model wrote before it called the tool was a preamble, not the answer.
        if (this.final.text) { this.final.preamble += this.final.text; this.final.text = ""; }
        this.touch("final", "phase", "timeline");
        break;
      case "fusion.phase":
        if (data.phase) this.phases[data.phase] = { status: data.status, durationMs: data.duration_ms, t };
        this.touch("phase");
        break;
      case "fusion.estimate":
        this.estimate = { min: data.cost_min, max: data.cost_max };
        this.touch("totals");
        break;
      default:
        this.notes.push(`ignored event ${name}`);
        break;
    }
  }

  onWeb(started, data, t) {
    const holder = data.role === "judge" ? this.judge : this.member(data.index, data.model);
    const list = holder.web;
    if (started) {
      list.push({ name: data.name, arguments: parseArguments(data.arguments), startedAt: t, endedAt: null, sources: null, bytes: null, error: null });
    } else {
      // The oldest unfinished call of that tool with the same arguments.
      let call = list.find((c) => c.endedAt === null && c.name === data.name && sameArguments(c.arguments, data.arguments));
      if (!call) { call = { name: data.name, arguments: parseArguments(data.arguments), startedAt: t - (data.duration_ms || 0) }; list.push(call); }
      call.endedAt = t;
      call.sources = data.sources ?? null;
      call.bytes = data.result_bytes ?? null;
      call.error = data.error || null;
    }
    this.touch(data.role === "judge" ? "judge" : `member:${data.index}`, "timeline");
  }

  /** A `chat.completion.chunk` (or the usage chunk, or an error chunk). */
  onChunk(chunk) {
    if (this.status === "connecting") this.status = "running";
    if (chunk.error) {
      this.fail({ message: chunk.error.message || "The stream ended with an error.", param: chunk.error.param, code: chunk.error.code });
      return;
    }
    if (chunk.usage) { this.usage = chunk.usage; this.touch("totals"); }
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
    if (!choice) return;
    const delta = choice.delta || {};
    const t = this.now();
    if (!this.final.model && chunk.model) this.final.model = chunk.model;
    if (typeof delta.content === "string" && delta.content) {
      if (this.final.startedAt === null) this.final.startedAt = this.toolCall ? t : 0;
      if (this.final.firstTokenAt === null) this.final.firstTokenAt = t;
      this.final.text += delta.content;
      this.touch("final", "timeline");
    }
    if (typeof delta.reasoning === "string" && delta.reasoning) { this.final.reasoning += delta.reasoning; this.touch("final"); }
    if (Array.isArray(delta.annotations)) {
      for (const a of delta.annotations) {
        const c = a && a.type === "url_citation" ? a.url_citation : null;
        if (c && c.url && !this.citations.some((x) => x.url === c.url)) this.citations.push(c);
      }
      this.touch("final");
    }
    if (choice.finish_reason) {
      this.final.finishReason = choice.finish_reason;
      this.final.endedAt = t;
      this.touch("final", "phase", "timeline");
    }
  }

  /** The stream ended normally. */
  finish() {
    if (this.status === "failed" || this.status === "cancelled") return;
    this.status = "done";
    this.endedAt = this.now();
    if (this.final.endedAt === null && (this.final.text || this.final.startedAt !== null)) this.final.endedAt = this.endedAt;
    this.touch("all");
  }

  fail(error) {
    this.status = "failed";
    this.error = error;
    this.stopRunning("failed");
  }

  cancel() {
    if (this.status === "done" || this.status === "failed") return;
    this.status = "cancelled";
    this.stopRunning("cancelled");
  }

  /** Whatever was still running stops with `status` (at the page's idea of now). */
  stopRunning(status) {
    const t = this.now();
    this.endedAt = t;
    for (const m of this.members) {
      if (!m || (m.status !== "running" && m.status !== "queued")) continue;
      m.status = status;
      m.endedAt = t;
      // Interrupted (the stream broke, the gateway ended it): not a failure the gateway reported
      // for this member, so say what happened (review 72C L4: "failed" with no reason, the panel "done").
      if (status === "failed" && !m.failure) m.failure = { reason: "interrupted", message: "the request ended before this answer finished" };
    }
    for (const a of this.judge.attempts) {
      if (a.status !== "running") continue;
      a.status = status;
      a.endedAt = t;
      if (status === "failed" && !a.failure) a.failure = { reason: "interrupted", message: "the request ended before this analysis finished" };
    }
    if (this.judge.status === "running" || this.judge.status === "retrying") {
      this.judge.status = status;
      // What was read of an attempt that never finished is no analysis (as for a failure the
      // gateway reports; review 75B #4).
      if (this.analysisSource !== "final") { this.analysis = emptyAnalysis(); this.analysisSource = null; }
    }
    if (this.final.startedAt !== null && this.final.endedAt === null) this.final.endedAt = t;
    this.touch("all");
  }

  currentAttempt() { return this.judge.attempts[this.judge.attempts.length - 1] || null; }

  setFinalAnalysis(analysis) {
    if (!analysis || typeof analysis !== "object") return;
    const next = emptyAnalysis();
    for (const field of ANALYSIS_FIELDS) {
      if (Array.isArray(analysis[field])) next[field] = analysis[field].map((item) => ({ item, provisional: false }));
    }
    this.analysis = next;
    this.analysisSource = "final";
  }

  get running() { return this.status === "connecting" || this.status === "running"; }
  get deliberated() { return this.toolCall !== null || this.members.length > 0; }

  /** Where the deliberation is, for the phase strip: each phase's state and duration. */
  phaseStates() {
    const members = this.members.filter(Boolean);
    const ended = (s) => s === "done" || s === "failed" || s === "cut" || s === "cancelled";
    const state = {};
    state.outer = this.toolCall?.forced ? "skipped" : this.toolCall ? "done" : this.final.text && !this.deliberated ? "skipped" : this.running ? "active" : this.status === "done" ? "done" : this.status;
    if (members.length === 0) state.panel = this.toolCall && this.running ? "active" : "pending";
    else if (members.every((m) => ended(m.status))) state.panel = members.every((m) => m.status === "failed") || members.some((m) => m.failure?.reason === "interrupted") ? "failed" : this.status === "cancelled" && members.some((m) => m.status === "cancelled") ? "cancelled" : "done";
    else state.panel = this.running ? "active" : this.status;
    const j = this.judge.status;
    state.judge = j === "waiting" ? (this.result && !this.result.analysis ? "failed" : "pending") : j === "running" || j === "retrying" ? (this.running ? "active" : this.status) : j;
    // A failed or cut answer is not done, whenever it stopped (review 62E L2).
    state.final = this.final.endedAt !== null && this.status !== "cancelled" && this.status !== "failed" ? "done"
      : this.final.startedAt !== null ? (this.running ? "active" : this.status) : "pending";
    for (const [phase, info] of Object.entries(this.phases)) {
      if (phase === "final" && state.final === "failed") continue;
      if (info.status === "completed" || info.status === "done") state[phase] = "done";
      else if (info.status === "skipped") state[phase] = "skipped";
      else if (info.status === "started") state[phase] = this.running ? "active" : state[phase];
    }
    return state;
  }

  /** One row per call for the timeline: start, first token, end (gateway clock) and outcome. */
  timelineRows() {
    const rows = [];
    const now = this.running ? this.now() : this.endedAt ?? this.now();
    const outer = this.usage?.fusion?.calls?.find((c) => c.role === "outer")?.model;
    if (this.toolCall && !this.toolCall.forced) rows.push({ key: "outer", label: outer || this.final.model || "outer model", role: "outer", start: 0, firstToken: null, end: this.toolCall.t, status: "done", note: "called fusion" });
    for (const m of this.members) {
      if (!m) continue;
      rows.push({ key: `member-${m.index}`, label: m.model, role: "panel", index: m.index, start: m.startedAt ?? 0, firstToken: m.firstTokenAt, end: m.endedAt, status: m.status, marks: m.web.map((w) => w.startedAt) });
    }
    this.judge.attempts.forEach((a, i) => {
      rows.push({ key: `judge-${i}`, label: `${isolated(a.model || this.judge.model)}${this.judge.attempts.length > 1 ? ` (attempt ${a.attempt})` : ""}`, role: "judge", start: a.startedAt, firstToken: a.firstTokenAt, end: a.endedAt, status: a.status, marks: i === this.judge.attempts.length - 1 ? this.judge.web.map((w) => w.startedAt) : [] });
    });
    if (this.final.startedAt !== null) {
      const status = this.final.endedAt !== null ? (this.status === "cancelled" ? "cancelled" : this.status === "failed" ? "failed" : "done") : this.running ? "running" : this.status;
      rows.push({ key: "final", label: this.final.model || "final answer", role: "final", start: this.final.startedAt, firstToken: this.final.firstTokenAt, end: this.final.endedAt, status });
    }
    return { rows, now };
  }
}

function emptyAnalysis() {
  return Object.fromEntries(ANALYSIS_FIELDS.map((f) => [f, []]));
}

function parseArguments(text) {
  if (typeof text !== "string") return text || {};
  try { return JSON.parse(text); } catch { return { raw: text }; }
}

function sameArguments(parsed, text) {
  return JSON.stringify(parsed) === JSON.stringify(parseArguments(text));
}
