// DOM helpers. Model output is untrusted: text only ever enters the page through text nodes
// (textContent), never as markup, and links only with an http(s) URL.

/**
 * Creates an element. `props`: `class`, `text`, `dataset`, `attrs` (set as attributes), and
 * `on<Event>` listeners; children are nodes or strings (added as text), arrays are flattened,
 * null and false skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  apply(node, props);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) if (value != null) node.setAttribute(name, String(value));
  append(node, children);
  return node;
}

function apply(node, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "attrs") for (const [name, v] of Object.entries(value)) { if (v != null && v !== false) node.setAttribute(name, v === true ? "" : String(v)); }
    else if (key.startsWith("on")) node.addEventListener(key.slice(2).toLowerCase(), value);
    else node[key] = value;
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Removes every child. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** Replaces the children of `node` with `children`. */
export function replaceChildren(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

/** The URL normalised if it is http or https, otherwise null (no javascript:, data:, …). */
/**
 * A name from outside (a model's) inside a line of the page's own text, isolated from it for
 * bidirectional layout (U+2068 … U+2069): a U+202E in one name cannot reverse the names after
 * it (review 62E N1).
 */
export function isolated(name) {
  return `\u2068${name}\u2069`;
}

export function safeURL(text) {
  try {
    const url = new URL(String(text).trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens in a new tab and gives the target no handle on this page; plain text when
 *  the URL is not http(s). */
export function externalLink(href, text, className) {
  const url = safeURL(href);
  if (!url) return document.createTextNode(String(text ?? href));
  // The target in the tooltip: a model's link text may name another address than it leads to.
  return h("a", { href: url, class: className, attrs: { target: "_blank", rel: "noopener noreferrer", title: url }, text: String(text ?? url) });
}

/** 1234.5 ms → "1.23 s"; small values in ms. */
export function formatMs(ms) {
  if (ms == null || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

/** A cost in dollars, with enough digits to be meaningful for small amounts. */
export function formatCost(cost) {
  if (cost == null || !Number.isFinite(cost)) return "—";
  if (cost === 0) return "$0";
  if (cost < 0.01) return `$${cost.toFixed(4)}`;
  return `$${cost.toFixed(3)}`;
}

/** 12345 → "12,345". */
export function formatCount(n) {
  return n == null || !Number.isFinite(n) ? "—" : Math.round(n).toLocaleString("en-US");
}

/** The host of a URL, for compact source labels. */
export function hostOf(url) {
  try { return new URL(url).host; } catch { return ""; }
}
