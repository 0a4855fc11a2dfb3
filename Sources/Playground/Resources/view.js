// Draws one turn (a question and its deliberation) from a Run, redrawing only the parts its
// `dirty` set names. Built once per turn; `update()` is called at most once per animation frame.

import { ANALYSIS_FIELDS, PHASES } from "./run.js";
import { externalLink, formatCost, formatCount, formatMs, h, hostOf, isolated } from "./dom.js";
import { inlineNodes, renderText } from "./text.js";
import { renderTimeline } from "./timeline.js";

const FIELD_TITLES = {
  consensus: "Consensus",
  contradictions: "Contradictions",
  partial_coverage: "Partial coverage",
  unique_insights: "Unique insights",
  blind_spots: "Blind spots",
};
const FIELD_HINTS = {
  consensus: "What the panel agrees on",
  contradictions: "Where they disagree, and who says what",
  partial_coverage: "Points only some of them made",
  unique_insights: "What a single model saw",
  blind_spots: "What none of them covered",
};
const PHASE_TITLES = { outer: "Your model", panel: "Panel", judge: "Judge", final: "Answer" };
const MEMBER_STATUS = { queued: "queued", waiting: "thinking", running: "streaming", done: "done", failed: "failed", cut: "cut", cancelled: "cancelled" };

export class TurnView {
  /**
   * @param {import("./run.js").Run} run  @param {(text: string) => void} announce
   * @param {(id: string) => Promise<object>} [loadGeneration] fetches a generation record
   */
  constructor(run, announce, loadGeneration) {
    this.run = run;
    this.announce = announce;
    this.loadGeneration = loadGeneration;
    this.generationTicket = 0;
    this.memberViews = [];
    this.lastPhases = {};
    this.build();
  }

  build() {
    const run = this.run;
    this.statusText = h("span", { class: "run-status" });
    this.phaseList = h("ol", { class: "phases", attrs: { "aria-label": "Progress" } },
      PHASES.map((p) => h("li", { class: "phase", dataset: { phase: p, state: "pending" } },
        h("span", { class: "phase-dot", attrs: { "aria-hidden": "true" } }), h("span", { class: "phase-name", text: PHASE_TITLES[p] }), h("span", { class: "phase-detail" }))));
    this.banners = h("div", { class: "banners" });
    this.columns = h("div", { class: "columns", dataset: { count: "0" } });
    this.panelSection = h("section", { class: "card panel-section", attrs: { "aria-label": "Panel answers" } },
      h("header", { class: "card-head" }, h("h3", { text: "Panel" }), this.panelNote = h("span", { class: "hint" })),
      this.columns);

    this.fieldViews = {};
    const grid = h("div", { class: "analysis-grid" });
    for (const field of ANALYSIS_FIELDS) {
      const count = h("span", { class: "count", text: "0" });
      const list = h("ul", { class: "items" });
      const empty = h("p", { class: "empty hint", text: "—" });
      grid.append(h("section", { class: `field field-${field}`, dataset: { field } },
        h("header", {}, h("h4", { text: FIELD_TITLES[field] }), count),
        h("p", { class: "field-hint", text: FIELD_HINTS[field] }), list, empty));
      this.fieldViews[field] = { count, list, empty };
    }
    this.judgeMeta = h("span", { class: "hint" });
    this.judgeWeb = h("ul", { class: "web-activity" });
    this.judgeRaw = h("pre", { class: "raw" });
    this.analysisSection = h("section", { class: "card analysis-section", attrs: { "aria-label": "The judge's analysis" } },
      h("header", { class: "card-head" }, h("h3", { text: "Judge's analysis" }), this.judgeMeta),
      this.judgeWeb, grid,
      h("details", { class: "raw-output" }, h("summary", { text: "Raw judge output" }), this.judgeRaw));

    this.answerModel = h("span", { class: "hint" });
    this.preamble = h("div", { class: "preamble rich" });
    this.reasoning = h("div", { class: "rich" });
    this.reasoningBox = h("details", { class: "reasoning", hidden: true }, h("summary", { text: "Reasoning" }), this.reasoning);
    this.answer = h("div", { class: "answer-text rich" });
    this.citations = h("ol", { class: "citations" });
    this.citationsBox = h("div", { class: "citations-box", hidden: true }, h("h4", { text: "Sources" }), this.citations);
    this.answerSection = h("section", { class: "card answer-section", attrs: { "aria-label": "Final answer" } },
      h("header", { class: "card-head" }, h("h3", { text: "Answer" }), this.answerModel),
      this.preamble, this.reasoningBox, this.answer, this.citationsBox);

    this.timeline = h("div", { class: "timeline" });
    this.totals = h("dl", { class: "totals" });
    // Built once and kept across redraws of the totals, so it stays open while the run goes on.
    this.generationRecord = h("pre", { class: "raw" });
    this.generationBox = h("details", { class: "raw-output generation", hidden: true },
      h("summary", { text: "Generation record" }), this.generationRecord);
    this.generationBox.addEventListener("toggle", () => { if (this.generationBox.open) this.showGeneration(); });
    this.timelineSection = h("section", { class: "card timeline-section", attrs: { "aria-label": "Timeline and totals" } },
      h("header", { class: "card-head" }, h("h3", { text: "Timeline" }),
        h("span", { class: "legend hint", attrs: { "aria-hidden": "true" } },
          h("span", { class: "key key-wait" }), "waiting ", h("span", { class: "key key-stream" }), "streaming ",
          h("span", { class: "key key-failed" }), "failed ", h("span", { class: "key key-cut" }), "cut")),
      this.timeline, this.totals, this.generationBox);

    this.deliberation = h("div", { class: "deliberation" }, this.panelSection, this.analysisSection);
    // Earlier turns fold their deliberation away (CSS); this brings it back.
    const toggle = h("button", { type: "button", class: "ghost small fold-toggle", attrs: { "aria-expanded": "false" }, text: "Show the deliberation" });
    toggle.addEventListener("click", () => {
      const open = this.root.classList.toggle("unfolded");
      toggle.setAttribute("aria-expanded", String(open));
      toggle.textContent = open ? "Hide the deliberation" : "Show the deliberation";
    });
    this.root = h("article", { class: "turn", dataset: { status: run.status } },
      h("div", { class: "question" }, h("span", { class: "who", text: "You" }), h("p", { text: run.question })),
      h("div", { class: "run-head" }, this.phaseList, this.statusText, toggle),
      this.banners, this.deliberation, this.answerSection, this.timelineSection);
  }

  /** Redraws the dirty parts. */
  update() {
    const run = this.run;
    const all = run.dirty.has("all");
    const dirty = (part) => all || run.dirty.has(part);
    // Each part on its own: what one part cannot draw (a shape no one expected from a model)
    // must not keep the others, the answer among them, from being drawn.
    const part = (draw) => { try { draw(); } catch (error) { console.error("playground: a part of the view failed", error); } };
    this.root.dataset.status = run.status;
    this.root.setAttribute("aria-busy", String(run.running));
    this.statusText.textContent = this.statusLine();
    if (dirty("phase") || dirty("members")) part(() => this.renderPhases());
    run.members.forEach((m, i) => { if (m && (all || run.dirty.has(`member:${i}`) || run.dirty.has("members") || run.running)) part(() => this.renderMember(m)); });
    if (dirty("members") || dirty("phase")) part(() => this.renderPanelNote());
    if (dirty("judge") || dirty("analysis")) part(() => this.renderJudge());
    if (dirty("analysis")) part(() => this.renderAnalysis());
    if (dirty("final")) part(() => this.renderAnswer());
    if (dirty("timeline") || run.running) {
      part(() => {
        const timeline = run.timelineRows();
        renderTimeline(this.timeline, timeline);
        // A request refused before it started has no calls to draw and nothing to total.
        this.timelineSection.hidden = timeline.rows.length === 0 && !run.usage && !run.running;
      });
    }
    if (dirty("totals") || all || run.running) part(() => this.renderTotals());
    part(() => this.renderBanners());
    this.deliberation.hidden = !run.deliberated && run.status !== "connecting" && run.status !== "running";
    // A judge that never started (stopped early, or no panel answered) has nothing to show.
    this.analysisSection.hidden = run.judge.status === "waiting" && !run.running;
    this.answerSection.hidden = !run.final.text && !run.final.preamble && run.final.startedAt === null && run.status !== "done";
    run.dirty.clear();
  }

  statusLine() {
    const run = this.run;
    const elapsed = formatMs(run.status === "connecting" ? performance.now() - run.requestedAt : run.running ? run.now() : run.endedAt);
    switch (run.status) {
      case "connecting": return `Connecting… ${elapsed}`;
      case "running": return `Running · ${elapsed}`;
      case "done": return `Done in ${elapsed}`;
      case "cancelled": return `Stopped after ${elapsed}`;
      default: return `Failed after ${elapsed}`;
    }
  }

  renderPhases() {
    const states = this.run.phaseStates();
    const members = this.run.members.filter(Boolean);
    for (const li of this.phaseList.children) {
      const phase = li.dataset.phase;
      li.dataset.state = states[phase];
      const detail = li.querySelector(".phase-detail");
      const info = this.run.phases[phase];
      if (info && Number.isFinite(info.durationMs)) detail.textContent = formatMs(info.durationMs);
      else if (phase === "panel" && members.length) detail.textContent = `${members.filter((m) => m.status === "done").length}/${members.length}`;
      else detail.textContent = "";
      if (this.lastPhases[phase] !== states[phase] && states[phase] === "active") this.announce(`${PHASE_TITLES[phase]}: working`);
    }
    if (this.lastPhases.final === "active" && states.final === "done") this.announce("The answer is complete");
    this.lastPhases = states;
  }

  renderPanelNote() {
    const members = this.run.members.filter(Boolean);
    const panel = this.run.result?.panel;
    this.panelNote.textContent = panel ? `${panel.answered} of ${panel.requested} answered` : members.length ? `${members.length} model${members.length === 1 ? "" : "s"}` : "waiting for your model to call fusion…";
  }

  memberView(m) {
    let view = this.memberViews[m.index];
    if (view) return view;
    const badge = h("span", { class: "badge" });
    const metrics = h("dl", { class: "metrics" });
    const web = h("ul", { class: "web-activity" });
    const reasoning = h("div", { class: "rich" });
    const reasoningBox = h("details", { class: "reasoning", hidden: true }, h("summary", { text: "Reasoning" }), reasoning);
    const text = h("div", { class: "member-text rich" });
    const failure = h("p", { class: "failure", hidden: true });
    const root = h("article", { class: `member hue-${m.index % 8}`, dataset: { index: String(m.index), status: m.status }, attrs: { "aria-label": `Panel member ${m.index + 1}: ${m.model}` } },
      h("header", {}, h("span", { class: "swatch", attrs: { "aria-hidden": "true" } }), h("span", { class: "member-model", text: m.model, title: m.model }), badge),
      metrics, web, reasoningBox, failure, text);
    view = this.memberViews[m.index] = { root, badge, metrics, web, reasoning, reasoningBox, text, failure, shownText: null, shownReasoning: null };
    // Columns in panel order, whatever order they started in.
    const after = this.memberViews.slice(m.index + 1).find(Boolean);
    this.columns.insertBefore(root, after ? after.root : null);
    this.columns.dataset.count = String(this.memberViews.filter(Boolean).length);
    return view;
  }

  renderMember(m) {
    const view = this.memberView(m);
    const status = m.status === "running" && m.firstTokenAt === null ? "waiting" : m.status;
    view.root.dataset.status = status;
    view.badge.textContent = m.cut ? "cut for latency" : MEMBER_STATUS[status] || status;
    view.badge.dataset.status = status;
    // Metrics: exact from the call's stats once done, estimated while streaming.
    const now = this.run.running ? this.run.now() : m.endedAt ?? this.run.endedAt ?? this.run.now();
    const end = m.endedAt ?? now;
    const s = m.stats;
    const ttft = s?.ttft_ms ?? (m.firstTokenAt !== null && m.startedAt !== null ? m.firstTokenAt - m.startedAt : null);
    let rate = null;
    let exact = false;
    if (s && s.completion_tokens && s.duration_ms > (s.ttft_ms || 0)) {
      rate = s.completion_tokens / ((s.duration_ms - (s.ttft_ms || 0)) / 1000);
      exact = true;
    } else if (m.firstTokenAt !== null && end - m.firstTokenAt > 50) {
      rate = (m.text.length + m.reasoning.length) / 4 / ((end - m.firstTokenAt) / 1000); // ~4 characters a token
    }
    const duration = s?.duration_ms ?? (m.startedAt !== null ? end - m.startedAt : null);
    const tokens = s ? s.completion_tokens : null;
    view.metrics.replaceChildren(
      metric("TTFT", ttft === null ? "—" : formatMs(ttft)),
      metric("tok/s", rate === null || !Number.isFinite(rate) ? "—" : `${exact ? "" : "≈"}${rate.toFixed(rate < 10 ? 1 : 0)}`),
      metric("time", duration === null ? "—" : formatMs(duration)),
      metric(tokens !== null ? "tokens" : "chars", formatCount(tokens ?? m.text.length)));
    renderWeb(view.web, m.web);
    if (m.reasoning !== view.shownReasoning) {
      view.reasoningBox.hidden = !m.reasoning;
      renderText(view.reasoning, m.reasoning);
      view.shownReasoning = m.reasoning;
    }
    // While it streams, a column follows its newest text (unless the reader scrolled up); once
    // it is over, a column that was following shows its answer from the start.
    if (m.text !== view.shownText) {
      view.following = view.text.scrollHeight - view.text.scrollTop - view.text.clientHeight < 24;
      renderText(view.text, m.text);
      if (view.following) view.text.scrollTop = view.text.scrollHeight;
      view.shownText = m.text;
    }
    if (m.status !== "running" && view.following) {
      view.following = false;
      view.text.scrollTop = 0;
    }
    if (m.failure || m.cut || m.status === "cancelled") {
      view.failure.hidden = false;
      view.failure.textContent = m.failure ? `${m.failure.reason}${m.failure.message ? `: ${m.failure.message}` : ""}`
        : m.cut ? `Cut for latency: the quorum was reached (${formatCount(m.cut.characters ?? m.text.length)} characters kept).`
          : "Stopped before it finished.";
    } else {
      view.failure.hidden = true;
    }
  }

  renderJudge() {
    const j = this.run.judge;
    const attempt = this.run.currentAttempt();
    const parts = [];
    if (j.model) parts.push(isolated(j.model));  // a U+202E in it cannot reverse what follows (review 72C N1)
    if (attempt && attempt.attempt > 1) parts.push(`attempt ${attempt.attempt}`);
    const status = { waiting: "waiting for the panel", running: this.run.analysisSource === "scanner" ? "reading the judge's output…" : "comparing the answers…", retrying: "retrying", done: "analysis ready", failed: "failed", cancelled: "stopped" }[j.status] || j.status;
    parts.push(status);
    this.judgeMeta.textContent = parts.join(" · ");
    this.judgeRaw.textContent = j.raw;
    renderWeb(this.judgeWeb, j.web);
  }

  renderAnalysis() {
    const run = this.run;
    for (const field of ANALYSIS_FIELDS) {
      const view = this.fieldViews[field];
      const items = run.analysis[field];
      view.count.textContent = String(items.length);
      // Items already shown keep their node (no flicker, no replayed animation); a provisional
      // item confirmed by the validated analysis only loses its mark.
      const shown = new Map([...view.list.children].map((li) => [li.dataset.key, li]));
      view.list.replaceChildren(...items.map(({ item, provisional }) => {
        const key = JSON.stringify(item);
        let li = shown.get(key);
        shown.delete(key);
        if (!li) {
          li = h("li", { dataset: { key } }, analysisItem(field, item, (model) => this.hueOf(model)));
        }
        li.classList.toggle("provisional", provisional);
        li.title = provisional ? "From the judge's output so far; not yet validated" : "";
        return li;
      }));
      const judgeOver = run.judge.status !== "running" && run.judge.status !== "retrying" && run.judge.status !== "waiting";
      view.empty.hidden = items.length > 0;
      view.empty.textContent = judgeOver ? "None." : "…";
    }
  }

  hueOf(model) {
    const member = this.run.members.find((m) => m && m.model === model);
    return member ? member.index % 8 : null;
  }

  renderAnswer() {
    const f = this.run.final;
    this.answerModel.textContent = f.model ? `written by ${f.model}` : "";
    renderText(this.preamble, f.preamble);
    this.preamble.hidden = !f.preamble;
    this.reasoningBox.hidden = !f.reasoning;
    renderText(this.reasoning, f.reasoning);
    renderText(this.answer, f.text || (this.run.running && f.startedAt !== null ? "…" : ""));
    this.citationsBox.hidden = this.run.citations.length === 0;
    this.citations.replaceChildren(...this.run.citations.map((c) =>
      h("li", {}, externalLink(c.url, c.title || c.url, "citation"), h("span", { class: "host", text: hostOf(c.url) }),
        c.content ? h("p", { class: "snippet", text: c.content }) : null)));
  }

  renderTotals() {
    const run = this.run;
    const u = run.usage;
    const rows = [];
    if (u) {
      rows.push(["Tokens", `${formatCount(u.prompt_tokens)} in · ${formatCount(u.completion_tokens)} out`]);
      rows.push(["Cost", formatCost(u.cost)]);
      if (Array.isArray(u.fusion?.calls)) rows.push(["Calls", String(u.fusion.calls.length)]);
    } else if (run.estimate) {
      rows.push(["Estimated cost", `${formatCost(run.estimate.min)} – ${formatCost(run.estimate.max)}`]);
    }
    const elapsed = run.running ? run.now() : run.endedAt;
    rows.push(["Time", formatMs(elapsed)]);
    if (run.final.firstTokenAt !== null) rows.push(["First answer token", formatMs(run.final.firstTokenAt)]);
    const overhead = u?.gateway_overhead_ms ?? u?.fusion?.gateway_overhead_ms ?? u?.overhead_ms;
    if (Number.isFinite(overhead)) rows.push(["Gateway overhead", formatMs(overhead)]);
    const nodes = rows.map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: v })));
    if (run.generationId) nodes.push(h("div", {}, h("dt", { text: "Generation" }), h("dd", { class: "mono", text: run.generationId })));
    this.totals.replaceChildren(...nodes);
    this.generationBox.hidden = !run.generationId || !this.loadGeneration;
  }

  /**
   * Fetches the record with the page's key and shows it as JSON, as text. Again on every
   * opening: the record is filed when the response ends, so one opened during the run may
   * not exist yet. Only the latest fetch writes.
   */
  async showGeneration() {
    const id = this.run.generationId;
    if (!id || !this.loadGeneration) return;
    const ticket = ++this.generationTicket;
    this.generationRecord.textContent = "Loading…";
    let text;
    try {
      text = JSON.stringify(await this.loadGeneration(id), null, 2);
    } catch (error) {
      text = `Could not load the record: ${error.message}`;
    }
    if (ticket === this.generationTicket) this.generationRecord.textContent = text;
  }

  renderBanners() {
    const run = this.run;
    const banners = [];
    if (run.error) {
      const { message, param } = run.error;
      banners.push(["error", `The request failed: ${message}${param && !message.includes(param) ? ` (${param})` : ""}`]);
    }
    if (run.status === "cancelled") banners.push(["warn", "Stopped. The gateway cancels every call that was still running."]);
    const result = run.result;
    if (result?.status === "error") {
      banners.push(["error", `Every panel model failed${result.failure_reason ? ` (${result.failure_reason})` : ""}. Your model answers without the panel.`]);
    } else if (result?.panel?.degraded) {
      const failed = (result.failed_models || []).map((f) => `${isolated(f.model)} (${f.reason || f.failure_reason || "failed"})`).join(", ");
      banners.push(["warn", `Degraded panel: ${result.panel.answered} of ${result.panel.requested} answered.${failed ? ` Failed: ${failed}.` : ""}`]);
    }
    if (result && !result.analysis && result.status !== "error") {
      const reason = result.analysis_failure?.reason || "the judge failed";
      banners.push(["warn", `No analysis: ${reason}. The answer is written from the panel's answers alone.`]);
    }
    if (run.status === "done" && !run.deliberated && run.final.text) banners.push(["info", "Your model answered directly, without deliberating."]);
    const key = JSON.stringify(banners);
    if (key === this.shownBanners) return;
    this.shownBanners = key;
    this.banners.replaceChildren(...banners.map(([kind, text]) => h("p", { class: `banner banner-${kind}`, attrs: { role: kind === "error" ? "alert" : null }, text })));
  }
}

function metric(label, value) {
  return h("div", {}, h("dt", { text: label }), h("dd", { text: value }));
}

/** Web tool activity: searches with their query, pages read with their address. */
function renderWeb(list, calls) {
  list.hidden = calls.length === 0;
  list.replaceChildren(...calls.map((c) => {
    const args = c.arguments || {};
    const running = c.endedAt == null;
    const outcome = running ? "…" : c.error ? `failed: ${c.error}` : c.name === "web_search" ? `${c.sources ?? 0} results` : `read${c.bytes != null ? `, ${formatCount(c.bytes)} B` : ""}`;
    const what = c.name === "web_search" ? h("span", { class: "query", text: `“${args.query ?? args.raw ?? ""}”` })
      : c.name === "web_fetch" ? externalLink(args.url, shortURL(args.url), "page") : h("span", { text: JSON.stringify(args) });
    return h("li", { class: `web web-${c.name === "web_search" ? "search" : "fetch"}`, dataset: { state: running ? "running" : c.error ? "failed" : "done" } },
      h("span", { class: "web-kind", text: c.name === "web_search" ? "search" : c.name === "web_fetch" ? "read" : c.name }), what, h("span", { class: "web-outcome", text: outcome }));
  }));
}

function shortURL(url) {
  try {
    const u = new URL(url);
    const path = u.pathname.length > 28 ? `${u.pathname.slice(0, 27)}…` : u.pathname;
    return `${u.host}${path}`;
  } catch {
    return String(url ?? "");
  }
}

/** One analysis item: strings as text; the judge's objects with model chips. Any shape a
 * model writes is drawn (a field of another type as its JSON), never an exception. */
function analysisItem(field, item, hueOf) {
  const chip = (model) => h("span", { class: `chip${hueOf(model) !== null ? ` hue-${hueOf(model)}` : ""}`, text: model });
  const text = (value) => (typeof value === "string" ? value : value == null ? "" : JSON.stringify(value));
  const list = (value) => (Array.isArray(value) ? value : value == null ? [] : [value]);
  if (typeof item === "string") return inlineNodes(item);
  if (!item || typeof item !== "object" || Array.isArray(item)) return [h("code", { text: JSON.stringify(item) })];
  if (field === "contradictions" && Array.isArray(item.stances)) {
    return [h("strong", {}, inlineNodes(text(item.topic))),
      h("ul", { class: "stances" }, item.stances.map((s) => (s && typeof s === "object"
        ? h("li", {}, chip(text(s.model)), " ", inlineNodes(text(s.stance)))
        : h("li", {}, inlineNodes(text(s))))))];
  }
  if (field === "partial_coverage" && "point" in item) {
    return [h("span", {}, inlineNodes(text(item.point))), " ", h("span", { class: "chips" }, list(item.models).map((m) => chip(text(m))))];
  }
  if (field === "unique_insights" && "insight" in item) {
    return [chip(text(item.model)), " ", h("span", {}, inlineNodes(text(item.insight)))];
  }
  return [h("code", { text: JSON.stringify(item) })];
}
