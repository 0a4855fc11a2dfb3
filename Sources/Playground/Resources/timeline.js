// The timeline: one bar per call (the outer model's first turn, each panel member, each judge
// attempt, the final answer) on the gateway's clock. A bar is light while the call waits for
// its first token and solid while it streams; its colour says how it ended (done, failed, cut,
// cancelled) and running calls grow with the clock. Small ticks mark web tool calls.
// Plain HTML and CSS: positions are set through the CSSOM (allowed by the page's CSP).

import { formatMs, h, isolated } from "./dom.js";

const STATUS_LABEL = { done: "done", failed: "failed", cut: "cut for latency", cancelled: "cancelled", running: "running", queued: "queued", retrying: "retrying" };

/** Redraws `container` from `{rows, now}` (see Run.timelineRows). */
export function renderTimeline(container, { rows, now }) {
  const end = Math.max(now, ...rows.map((r) => r.end ?? 0), 1);
  const scale = niceScale(end);
  const pct = (t) => `${Math.max(0, Math.min(100, (t / scale.max) * 100)).toFixed(3)}%`;

  const axis = h("div", { class: "tl-axis", attrs: { "aria-hidden": "true" } });
  for (let t = 0; t <= scale.max + 1e-6; t += scale.step) {
    const tick = h("span", { class: "tl-tick", text: formatMs(t) });
    tick.style.left = pct(t);
    axis.append(tick);
  }

  const list = h("ol", { class: "tl-rows" });
  for (const row of rows) {
    const finished = row.end != null;
    const stop = finished ? row.end : now;
    const first = row.firstToken != null && row.firstToken <= stop ? row.firstToken : null;
    const status = finished ? row.status : "running";
    const track = h("div", { class: "tl-track" });
    const waiting = h("span", { class: "tl-wait" });
    waiting.style.left = pct(row.start);
    waiting.style.width = pct((first ?? stop) - row.start);
    track.append(waiting);
    if (first != null) {
      const streaming = h("span", { class: "tl-stream" });
      streaming.style.left = pct(first);
      streaming.style.width = pct(Math.max(stop - first, scale.max / 400));
      track.append(streaming);
    }
    for (const mark of row.marks || []) {
      const tick = h("span", { class: "tl-mark", attrs: { title: "web tool call" } });
      tick.style.left = pct(mark);
      track.append(tick);
    }
    const parts = [`started at ${formatMs(row.start)}`];
    if (first != null) parts.push(`first token after ${formatMs(first - row.start)}`);
    if (finished) parts.push(`${STATUS_LABEL[status] || status} at ${formatMs(row.end)}`);
    else parts.push("running");
    const summary = `${roleLabel(row)}: ${parts.join(", ")}`;
    list.append(h("li", { class: row.role === "panel" ? `tl-row hue-${row.index % 8}` : "tl-row", dataset: { status, role: row.role }, attrs: { "aria-label": summary, title: summary } },
      h("span", { class: "tl-label" }, h("span", { class: "tl-role", text: roleLabel(row, true) }), h("span", { class: "tl-model", text: row.label })),
      track,
      h("span", { class: "tl-value", text: finished ? formatMs(row.end - row.start) : "…" })));
  }
  container.replaceChildren(axis, list);
}

function roleLabel(row, short = false) {
  switch (row.role) {
    case "outer": return short ? "outer" : "outer model";
    case "panel": return short ? `#${row.index + 1}` : `panel member ${row.index + 1} (${isolated(row.label)})`;
    case "judge": return short ? "judge" : `judge (${isolated(row.label)})`;
    case "final": return short ? "answer" : `final answer (${isolated(row.label)})`;
    default: return row.role;
  }
}

/** An axis of 4–8 round steps covering `max` milliseconds. */
function niceScale(max) {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => raw <= s) || 10 * power;
  return { step, max: Math.ceil(max / step) * step };
}
