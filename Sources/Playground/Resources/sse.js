// An incremental Server-Sent Events parser, after the WHATWG "event stream interpretation"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
// Feed it decoded text in pieces of any size: lines may end in LF, CR or CRLF, and a piece may
// end anywhere, even between a CR and its LF. Comments (": …") are skipped, `data:` lines of
// one event are joined with "\n", an event is dispatched on its blank line.

/** A line longer than this ends the stream with an error (a hostile or broken server). */
export const MAX_LINE_CHARACTERS = 32 * 1024 * 1024;

export class SSEParser {
  /** @param {(event: {event: string, data: string, id: string}) => void} onEvent */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    // How much of `buffer` is known to hold no line break: a long line fed in many pieces is
    // searched once, not again from its start with every piece.
    this.scanned = 0;
    this.started = false;
    this.data = [];
    this.eventName = "";
    this.lastEventId = "";
  }

  /** Feeds the next piece of the stream. */
  push(text) {
    this.buffer += text;
    if (!this.started && this.buffer.length > 0) {
      this.started = true;
      if (this.buffer.charCodeAt(0) === 0xfeff) this.buffer = this.buffer.slice(1); // a leading BOM
    }
    let start = 0;
    let from = this.scanned;
    let searched = this.buffer.length;
    for (;;) {
      const lf = this.buffer.indexOf("\n", from);
      const cr = this.buffer.indexOf("\r", from);
      if (lf < 0 && cr < 0) break;
      let end, next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF: wait for the next piece.
        if (cr === this.buffer.length - 1) { searched = cr; break; }
        end = cr;
        next = this.buffer.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end));
      start = next;
      from = next;
    }
    this.buffer = this.buffer.slice(start);
    this.scanned = Math.max(0, searched - start);
    if (this.buffer.length > MAX_LINE_CHARACTERS) throw new Error(`the stream sent a line of more than ${MAX_LINE_CHARACTERS} characters`);
  }

  /** The stream ended: a final line without its line break still counts, but an event without
   *  its blank line is not dispatched (as the spec says). */
  end() {
    if (this.buffer.length > 0) {
      const last = this.buffer.endsWith("\r") ? this.buffer.slice(0, -1) : this.buffer;
      this.buffer = "";
      this.scanned = 0;
      this.line(last);
    }
    this.data = [];
    this.eventName = "";
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        this.onEvent({ event: this.eventName || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.data = [];
      this.eventName = "";
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" a comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "data": this.data.push(value); break;
      case "event": this.eventName = value; break;
      case "id": if (!value.includes("\0")) this.lastEventId = value; break;
      default: break; // "retry" and unknown fields do not concern a fetch-based reader
    }
  }
}
