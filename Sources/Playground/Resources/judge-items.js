// Reads the judge's analysis item by item while its JSON is still streaming, so the analysis
// fills in before the judge finishes. The gateway's `fusion.judge.item` events do the same,
// validated; this scanner is the fallback for gateways that send only `fusion.judge.progress`
// deltas, and its items are shown as provisional until `fusion.judge.completed` replaces them.
//
// It tracks just enough of the JSON grammar (strings, escapes, nesting) to cut out each complete
// element of the top-level arrays named in `fields`, then parses that element with JSON.parse.
// Text before the first "{" (a code fence, a preamble) is skipped.

export const ANALYSIS_FIELDS = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"];

export class JudgeItemScanner {
  /** @param {(field: string, item: unknown) => void} onItem */
  constructor(onItem, fields = ANALYSIS_FIELDS) {
    this.onItem = onItem;
    this.fields = new Set(fields);
    this.depth = 0;          // nesting depth of objects and arrays
    this.inString = false;
    this.escaped = false;
    this.string = "";        // the string being read, when it may be a key
    this.lastString = null;  // the last complete string at depth 1 (a key, once ":" follows)
    this.key = null;         // the top-level key whose value is being read
    this.field = null;       // the analysis field whose array is open (depth 2)
    this.item = null;        // the text of the element being read, or null between elements
    this.started = false;
  }

  /** Feeds the next piece of the judge's output. */
  push(text) {
    for (const ch of text) this.step(ch);
  }

  step(ch) {
    if (!this.started) {
      if (ch !== "{") return;
      this.started = true;
    }
    if (this.item !== null) this.item += ch;
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (ch === "\\") this.escaped = true;
      else if (ch === '"') { this.inString = false; if (this.depth === 1) this.lastString = this.string; }
      if (this.depth === 1 && this.inString) this.string += ch;
      return;
    }
    switch (ch) {
      case '"':
        this.inString = true;
        this.string = "";
        this.beginItem(ch);
        break;
      case ":":
        if (this.depth === 1) this.key = this.lastString;
        break;
      case "{":
      case "[":
        this.beginItem(ch);
        this.depth += 1;
        if (ch === "[" && this.depth === 2 && this.fields.has(this.key)) this.field = this.key;
        break;
      case "}":
      case "]":
        if (this.depth === 2 && ch === "]") {
          this.finishItem(true);
          this.field = null;
        }
        this.depth -= 1;
        if (this.depth === 2 && this.item !== null) this.finishItem(false);
        break;
      case ",":
        if (this.depth === 2) this.finishItem(true);
        if (this.depth === 1) this.key = null;
        break;
      default:
        if (!/\s/.test(ch)) this.beginItem(ch);
        break;
    }
  }

  /** A value starts directly in a field's array: begin collecting its text. */
  beginItem(ch) {
    if (this.field !== null && this.depth === 2 && this.item === null) this.item = ch;
  }

  /** An element ended. `delimiter`: the "," or "]" that ended it was appended and is dropped. */
  finishItem(delimiter) {
    if (this.field === null || this.item === null) return;
    const text = delimiter ? this.item.slice(0, -1) : this.item;
    this.item = null;
    let value;
    try { value = JSON.parse(text); } catch { return; }
    this.onItem(this.field, value);
  }
}
