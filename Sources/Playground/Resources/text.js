// Renders model text (untrusted, possibly half-streamed markdown) as DOM nodes: paragraphs,
// line breaks, bullet and numbered lists, headings, quotes, fenced code blocks, inline code,
// bold, and links. Every piece of text becomes a text node; links are made only for http(s)
// URLs (markdown `[text](url)` or bare), open in a new tab with rel="noopener noreferrer".
// An unclosed code fence (mid-stream) is shown as code so far.

import { externalLink, h } from "./dom.js";

/** Past this many characters, text is shown as it is, not as markdown: it is drawn again on
 * every frame while it streams. */
export const MAX_MARKDOWN_CHARACTERS = 200_000;

// What each container shows: its text, and the part of it that can no longer change (up to
// the last blank line outside a code fence: the blocks before it are final whatever follows).
// Streamed text then redraws only its unfinished tail, not everything from the start on every
// frame (which was quadratic, and rebuilt links under the reader's pointer).
const shown = new WeakMap(); // container → { text, stable, stableNodes, childCount }

/** Fills `container` with `text` rendered (replacing what was there). */
export function renderText(container, text) {
  const value = String(text ?? "").replace(/\r\n?/g, "\n");
  const last = shown.get(container);
  // Kept only while no one else changed the container.
  const intact = last && container.childNodes.length === last.childCount;
  if (intact && last.text === value) return;
  if (value.length > MAX_MARKDOWN_CHARACTERS) {
    renderPlain(container, value, intact && last.plain ? last : null);
    return;
  }
  if (intact && last.stable.length > 0 && value.startsWith(last.stable)) {
    while (container.childNodes.length > last.stableNodes) container.lastChild.remove();
    const tail = blocks(value.slice(last.stable.length));
    container.append(...tail.nodes);
    shown.set(container, { text: value, stable: value.slice(0, last.stable.length + tail.stableLength),
                           stableNodes: last.stableNodes + tail.stableNodes, childCount: container.childNodes.length });
    return;
  }
  const all = blocks(value);
  container.replaceChildren(...all.nodes);
  shown.set(container, { text: value, stable: value.slice(0, all.stableLength), stableNodes: all.stableNodes,
                         childCount: container.childNodes.length });
}

/** Past this many characters, plain text is drawn in blocks of at most this many, cut after a
 * line's end: a block is laid out once, and a frame lays out only the new ones and the
 * unfinished last (review 72C: an 8 MB answer redrawn whole took 2.5 s a frame). A line longer
 * than `PLAIN_LINE_CUT` is cut even so (copying it then gains a line break there: review 73). */
const PLAIN_BLOCK_CHARACTERS = 16_384;
const PLAIN_LINE_CUT = 262_144;

/** `value` as plain text, appending to what `last` (this container's plain state) shows when
 * `value` goes on from it. */
function renderPlain(container, value, last) {
  let state = last;
  if (!state || !value.startsWith(state.text)) {
    const tail = h("div", { class: "plain-text" });
    container.replaceChildren(tail);
    state = { text: "", plain: true, committed: 0, tail, stable: "", stableNodes: 0, childCount: 0 };
  }
  let pending = value.slice(state.committed);
  while (pending.length > PLAIN_BLOCK_CHARACTERS) {
    const newline = pending.lastIndexOf("\n", PLAIN_BLOCK_CHARACTERS);
    const longLine = newline < 0 ? pending.indexOf("\n") : -1;
    let cut;
    if (newline >= 0) cut = newline + 1;
    else if (longLine >= 0 && longLine < PLAIN_LINE_CUT) cut = longLine + 1; // the long line's end
    else if (pending.length > PLAIN_LINE_CUT) cut = PLAIN_LINE_CUT;
    else break; // a line still growing: it stays in the tail
    const unit = pending.charCodeAt(cut - 1);
    if (unit >= 0xd800 && unit <= 0xdbff) cut -= 1; // never between a surrogate pair's halves
    // A block ends where its line does: the block's own end is that line break (on screen and
    // when copied), so its "\n" is not written twice.
    const text = pending.charCodeAt(cut - 1) === 10 ? pending.slice(0, cut - 1) : pending.slice(0, cut);
    state.tail.before(h("div", { class: "plain-text", text }));
    state.committed += cut;
    pending = pending.slice(cut);
  }
  state.tail.textContent = pending;
  state.text = value;
  state.childCount = container.childNodes.length;
  shown.set(container, state);
}

/** Inline markup only (for one-line items such as analysis points). */
export function inlineNodes(text) {
  return inline(String(text ?? ""));
}

// Model text is hostile: every pattern runs in time linear in its line (no two unbounded
// repetitions that can split the same characters between them); what would need one is done
// by hand (a fence's info string, a heading's closing hashes).
const FENCE = /^\s{0,3}(`{3,}|~{3,})(.*)$/;
const FENCE_INFO = /^[\w+#.-]*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const HEADING = /^\s{0,3}(#{1,6})[ \t]+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;

/** A fence line's marker and language, or null: the info string must be one word. */
function fenceOf(line) {
  const match = line.match(FENCE);
  if (!match) return null;
  const info = match[2].trim();
  return FENCE_INFO.test(info) ? [match[0], match[1], info] : null;
}

/** A heading's text without its closing sequence of hashes (`## Title ##`). */
function headingText(text) {
  let value = text.trimEnd();
  let end = value.length;
  while (end > 0 && value[end - 1] === "#") end--;
  if (end === 0 || value[end - 1] === " " || value[end - 1] === "\t") value = value.slice(0, end).trimEnd();
  return value;
}

/** The blocks of `text` (line ends already "\n"), and how much of it, in characters and in
 * nodes, ends at its last blank line outside a fence: what comes after never changes those. */
function blocks(text) {
  const lines = text.split("\n");
  const out = [];
  let paragraph = [];
  let list = null; // {node, ordered}
  let quoteOpen = false; // the previous line was a quote: the next one joins it
  let stableLength = 0;
  let stableNodes = 0;

  const flushParagraph = () => {
    if (paragraph.length === 0) return;
    const p = h("p");
    paragraph.forEach((line, i) => {
      if (i > 0) p.append(h("br"));
      p.append(...inline(line));
    });
    out.push(p);
    paragraph = [];
  };
  const flushList = () => { list = null; };
  // Where line `i` ends in `text`: counted forward from the last line asked for (lines are
  // asked for in order), so the whole text costs one pass.
  let counted = 0;
  let countedEnd = lines.length ? lines[0].length : 0;
  const lineEnd = (i) => {
    while (counted < i) { counted++; countedEnd += 1 + lines[counted].length; }
    return countedEnd;
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = fenceOf(line);
    if (fence) {
      flushParagraph(); flushList(); quoteOpen = false;
      const marker = fence[1];
      const body = [];
      let j = i + 1;
      while (j < lines.length && !(lines[j].trim().startsWith(marker[0].repeat(marker.length)) && lines[j].trim().replace(/[`~]/g, "") === "")) body.push(lines[j++]);
      const code = h("code", { text: body.join("\n") });
      if (fence[2]) code.dataset.lang = fence[2];
      out.push(h("pre", { class: "code" }, code));
      i = j; // skips the closing fence (or runs to the end when the fence is still open)
      continue;
    }
    if (line.trim() === "") {
      flushParagraph(); flushList(); quoteOpen = false;
      // A blank line with its line end: every block before it is final.
      if (i < lines.length - 1) { stableLength = lineEnd(i) + 1; stableNodes = out.length; }
      continue;
    }
    const wasQuote = quoteOpen;
    quoteOpen = false;
    const heading = line.match(HEADING);
    if (heading) {
      flushParagraph(); flushList();
      const level = Math.min(6, heading[1].length + 2); // model headings sit below the page's own
      out.push(h(`h${level}`, { class: "md-heading" }, inline(headingText(heading[2]))));
      continue;
    }
    const bullet = line.match(BULLET);
    const numbered = bullet ? null : line.match(NUMBERED);
    if (bullet || numbered) {
      flushParagraph();
      const ordered = !!numbered;
      if (!list || list.ordered !== ordered) {
        list = { ordered, node: h(ordered ? "ol" : "ul") };
        if (ordered && numbered[1] !== "1") list.node.start = Number(numbered[1]);
        out.push(list.node);
      }
      list.node.append(h("li", {}, inline(bullet ? bullet[1] : numbered[2])));
      continue;
    }
    const quote = line.match(QUOTE);
    if (quote) {
      flushParagraph(); flushList();
      const last = out[out.length - 1];
      if (wasQuote) last.append(h("br"), ...inline(quote[1]));
      else out.push(h("blockquote", {}, inline(quote[1])));
      quoteOpen = true;
      continue;
    }
    // A line that continues a list item (indented) joins it; anything else is paragraph text.
    if (list && /^\s{2,}\S/.test(line)) {
      list.node.lastElementChild.append(" ", ...inline(line.trim()));
      continue;
    }
    flushList();
    paragraph.push(line);
  }
  flushParagraph();
  return { nodes: out, stableLength, stableNodes };
}

// Inline: `code`, **bold**, [text](http…), bare http(s) URLs. Longest constructs first.
// Bounded so that no start scans far: a link's text stops at the next bracket, its URL and
// title are capped, a code span's backticks too. A link's URL is http(s) (all `safeURL` takes, in
// any case) and stops at a bracket, a space or an unbalanced parenthesis (one level of them is
// kept, as in Wikipedia's URLs, and a bracketed IPv6 host): with any non-space allowed, every
// "[a](" scanned 2,048 characters for its ")" and 190 KB of them took 446 ms a frame (review 62E
// M1). A URL with brackets elsewhere (`?a[]=1`) shows as text.
const INLINE = /(`{1,16})([^`]+?)\1|\*\*(?=\S)([^*]+?)\*\*|\[([^[\]\n]{1,1000})\]\((https?:\/\/(?:\[[0-9a-f:.]{2,45}\])?(?:[^\s()[\]]|\([^\s()[\]]{0,256}\)){0,2048})(?:\s+"[^"\n]{0,256}")?\)|(https?:\/\/[^\s<>"'`]+)/gi;

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    last = match.index + match[0].length;
    if (match[2] !== undefined) {
      nodes.push(h("code", { text: match[2] }));
    } else if (match[3] !== undefined) {
      nodes.push(h("strong", {}, inline(match[3])));
    } else if (match[4] !== undefined) {
      nodes.push(externalLink(match[5], match[4]));
      if (nodes[nodes.length - 1].nodeType === Node.TEXT_NODE) nodes[nodes.length - 1].textContent = match[0];
    } else {
      // A bare URL: trailing punctuation belongs to the sentence, not the link.
      // Stripped by hand: /[.,;:!?)\]]+$/ backtracks, quadratic in a run of punctuation (a
      // model's 50,000 dots froze the tab on every frame; review 46).
      let url = match[6];
      let end = url.length;
      while (end > 0 && ".,;:!?)]".includes(url[end - 1])) end--;
      const rest = url.slice(end);
      url = url.slice(0, end);
      nodes.push(externalLink(url, url));
      if (rest) { nodes.push(document.createTextNode(rest)); }
    }
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}
