// The gateway's public API as the page uses it: the model list, streamed chat completions
// with Fusion's named events, and generation records. Nothing here touches the DOM.

import { SSEParser } from "./sse.js";

const KEY_STORAGE = "fusion-gateway.key";

/** The gateway answered 401: the page must ask for a (new) key. */
export class AuthError extends Error {
  constructor(message) { super(message || "This gateway needs a key."); this.name = "AuthError"; }
}

/** Any other error response, in OpenAI's shape when the gateway sent one. */
export class APIError extends Error {
  constructor(status, message, param, code) {
    super(message);
    this.name = "APIError";
    this.status = status;
    this.param = param;
    this.code = code;
  }
}

export class GatewayClient {
  /** @param {Storage} storage where the key is kept (sessionStorage: this tab only, never the URL) */
  constructor(storage) { this.storage = storage; }

  // A stored key a header cannot carry (kept by an older page) is no key: the page asks again.
  get key() { try { const key = this.storage.getItem(KEY_STORAGE) || ""; return /^[\x21-\x7E]*$/.test(key) ? key : ""; } catch { return ""; } }
  set key(value) {
    try { if (value) this.storage.setItem(KEY_STORAGE, value); else this.storage.removeItem(KEY_STORAGE); } catch { /* storage off: key lives for this page only */ }
    this.memoryKey = value;
  }

  headers(extra = {}) {
    const key = this.key || this.memoryKey;
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  /** `GET /v1/models` → the `data` array. */
  async models() {
    const response = await fetch("/v1/models", { headers: this.headers(), cache: "no-store" });
    if (!response.ok) throw await errorFrom(response);
    const body = await response.json();
    return Array.isArray(body.data) ? body.data : [];
  }

  /**
   * `GET /api/v1/generation?id=…` → the record (its `data`), fetched with the key like every
   * other call (a link opened in a tab would carry none: a 401 on a gateway with keys).
   */
  async generation(id) {
    const response = await fetch(`/api/v1/generation?id=${encodeURIComponent(id)}`, { headers: this.headers(), cache: "no-store" });
    if (!response.ok) throw await errorFrom(response);
    const body = await response.json();
    return body && typeof body === "object" && "data" in body ? body.data : body;
  }

  /**
   * `POST /v1/chat/completions` streamed. Calls `onEvent(name, data)` for each named event
   * (`fusion.*`, data parsed as JSON), `onChunk(chunk)` for each `chat.completion.chunk`, and
   * resolves with `{generationId, done}` when the stream ends (`done`: `[DONE]` arrived).
   * Aborting `signal` rejects with an AbortError and closes the connection, which makes the
   * gateway cancel every inner call.
   */
  async streamChat(body, { signal, onResponse, onEvent, onChunk, onMalformed }) {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (!response.ok) throw await errorFrom(response);
    const generationId = response.headers.get("X-Generation-Id") || "";
    onResponse?.({ generationId });
    let done = false;
    const parser = new SSEParser(({ event, data }) => {
      if (event !== "message") {
        const json = parseJSON(data);
        if (json === undefined) onMalformed?.(event, data); else onEvent(event, json);
      } else if (data === "[DONE]") {
        done = true;
      } else {
        const json = parseJSON(data);
        if (json === undefined) onMalformed?.("chunk", data); else onChunk(json);
      }
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    try {
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
      parser.push(decoder.decode());
      parser.end();
    } catch (error) {
      // Whatever stops the page reading also stops the request: the gateway sees the client
      // go and cancels the deliberation, rather than running (and billing) it for no one.
      reader.cancel().catch(() => {});
      throw error;
    }
    return { generationId, done };
  }
}

const FUSION_ALIASES = new Set(["fusion", "openrouter/fusion"]);

/**
 * What the page needs from `GET /v1/models`: the models to pick from, and Fusion's presets when
 * the list describes them (an entry such as `{"id":"fusion","fusion":{"presets":{"quality":[…]},
 * "default_preset":"quality"}}`); `presets` is null when it does not.
 */
export function describeModels(list) {
  const entries = Array.isArray(list) ? list.filter((m) => m && typeof m.id === "string") : [];
  const fusion = entries.find((m) => m.fusion && typeof m.fusion === "object")?.fusion;
  let presets = null;
  if (fusion && fusion.presets && typeof fusion.presets === "object") {
    presets = {};
    for (const [name, members] of Object.entries(fusion.presets)) {
      if (Array.isArray(members)) presets[name] = members.filter((m) => typeof m === "string");
    }
  }
  const defaultPreset = presets && typeof fusion.default_preset === "string" && presets[fusion.default_preset] ? fusion.default_preset : null;
  const models = entries.filter((m) => !m.fusion && !FUSION_ALIASES.has(m.id)).map((m) => ({ id: m.id, description: String(m.description || "") }));
  return { models, presets, defaultPreset };
}

function parseJSON(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

/** The error a non-2xx response stands for (401 → AuthError). */
async function errorFrom(response) {
  let message = `HTTP ${response.status}`;
  let param, code;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      param = body.error.param || undefined;
      code = body.error.code || undefined;
    }
  } catch { /* not JSON: keep the status */ }
  if (response.status === 401) return new AuthError(message);
  return new APIError(response.status, message, param, code);
}
