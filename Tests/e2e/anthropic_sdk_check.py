"""Replays the gateway's /v1/messages output (Fixtures/surfaces/messages-*) to the official
`anthropic` Python SDK over loopback: its raw event stream, its `messages.stream()` helper (which
needs every event named, message_start first, dense block indexes and usage on message_delta),
its error handling, and a whole message.

Usage: python anthropic_sdk_check.py FIXTURES_DIR         replay the golden files
       python anthropic_sdk_check.py --gateway BASE_URL [MODEL]   against a running fusion-gateway
                                                          (its simulated models): streamed, whole,
                                                          tool use, fusion, errors, token counts
                                                          (by MODEL, on an Anthropic provider)
Exits non-zero with a message on the first failed check; prints one line per passed check.
"""
import http.server
import os
import sys
import threading

import anthropic

served = {}


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def gateway_checks(base_url, counting_model=None):
    """The SDK against the gateway itself (BASE_URL without /v1: the SDK adds it)."""
    client = anthropic.Anthropic(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
    ask = dict(max_tokens=256, messages=[{"role": "user", "content": "Why is the sky blue?"}])
    with client.messages.stream(model="sim/normal:pace_ms=1", **ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check("gateway: streamed text", text.startswith("This is a simulated answer") and final.content[0].text == text, repr(text))
    check("gateway: streamed usage and stop", final.usage.output_tokens > 0 and final.stop_reason == "end_turn", repr(final))
    check("gateway: the message names the model asked for", final.model == "sim/normal:pace_ms=1", final.model)

    # Models in Anthropic's shape, paged as Anthropic pages them (the SDK's iterator follows
    # `after_id`); the SDK percent-encodes the slash in the id.
    first = client.models.list(limit=5)
    every = list(client.models.list(limit=5))
    check("gateway: models list", "sim/normal" in [m.id for m in every] and all(m.type == "model" and m.display_name for m in every),
          repr(every[:3]))
    check("gateway: models paged", len(first.data) == 5 and first.has_more and len(every) > 5
          and len({m.id for m in every}) == len(every) and every == list(client.models.list(limit=1000)), repr(len(every)))
    model = client.models.retrieve("sim/normal")
    check("gateway: models retrieve", model.id == "sim/normal" and model.type == "model", repr(model))

    # Token counting (Claude Code calls the beta form, `?beta=true`): answered by an Anthropic
    # provider; for a model on another kind of provider, a 404 (the client estimates itself).
    if counting_model:
        counted = client.messages.count_tokens(model=counting_model, messages=ask["messages"], system="Be brief.")
        check("gateway: count tokens", counted.input_tokens > 0, repr(counted))
        beta = client.beta.messages.count_tokens(model=counting_model, messages=ask["messages"])
        check("gateway: count tokens (beta)", 0 < beta.input_tokens < counted.input_tokens, repr(beta))
    try:
        client.messages.count_tokens(model="sim/normal", messages=ask["messages"])
        check("gateway: no count for a model without one", False, "no error")
    except anthropic.NotFoundError as error:
        check("gateway: no count for a model without one", "token count" in str(error.body), repr(error.body))

    message = client.messages.create(model="sim/normal", **ask)
    check("gateway: whole message", message.content[0].text.startswith("This is a simulated answer")
          and message.usage.input_tokens > 0, repr(message))

    tools = [{"name": "get_weather", "description": "The weather in a city",
              "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    weather = dict(max_tokens=256, tools=tools, messages=[{"role": "user", "content": "Weather in Paris?"}])
    with client.messages.stream(model="sim/tool-call:pace_ms=1", **weather) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    check("gateway: streamed tool use", final.stop_reason == "tool_use" and len(calls) == 1 and calls[0].name == "get_weather"
          and calls[0].input.get("location") == "Paris, France", repr(final.content))
    followup = client.messages.create(model="sim/normal", max_tokens=256, tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": calls[0].id, "name": "get_weather", "input": calls[0].input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "18 C, sunny"}]}])
    check("gateway: a tool result round trip", followup.stop_reason == "end_turn" and followup.content[0].type == "text", repr(followup))

    question = dict(max_tokens=1024, messages=[{"role": "user", "content": "Should cities ban cars from their centres?"}])
    with client.messages.stream(model="fusion", **question) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check("gateway: fusion streams its final answer, the deliberation unseen", text.startswith("Drawing on a panel"), repr(text[:200]))
    check("gateway: fusion usage summed", final.usage.output_tokens > 0, repr(final.usage))
    # The deliberation's result rides on message_delta (the SDK keeps the field it does not know).
    deltas = [event for event in client.messages.create(model="fusion", stream=True, **question) if event.type == "message_delta"]
    result = getattr(deltas[-1], "fusion", None) if deltas else None
    check("gateway: fusion result on message_delta", isinstance(result, dict) and result.get("panel", {}).get("answered", 0) > 0
          and "analysis" in result, repr(result)[:300])
    whole = client.messages.create(model="fusion", **question)
    check("gateway: fusion whole", whole.content[-1].text.startswith("Drawing on a panel"), repr(whole.content))
    # Asked for, the deliberation as named events: the raw stream hands them on, the helper skips them.
    events_asked = dict(extra_body={"stream_options": {"include_fusion_events": True}}, **question)
    kinds = [event.type for event in client.messages.create(model="fusion", stream=True, **events_asked)]
    check("gateway: fusion events when asked", kinds[0] == "message_start" and "fusion.judge.item" in kinds and kinds[-1] == "message_stop",
          repr(sorted(set(kinds))))
    with client.messages.stream(model="fusion", **events_asked) as stream:
        text = "".join(stream.text_stream)
    check("gateway: the stream helper skips fusion events", text.startswith("Drawing on a panel"), repr(text[:200]))

    try:
        client.messages.create(model="sim/error:status=503", **ask)
        check("gateway: upstream failure raises", False, "no error")
    except anthropic.APIStatusError as error:
        check("gateway: upstream failure raises with its status and Anthropic's shape", error.status_code in (502, 503)
              and isinstance(error.body, dict) and error.body.get("type") == "error", repr(error.body))
        check("gateway: the error's request id is the generation id", error.request_id
              and error.request_id == error.response.headers.get("x-generation-id"), repr(error.request_id))
    try:
        client.messages.create(model="sim/normal", max_tokens=0, messages=ask["messages"])
        check("gateway: a bad request raises", False, "no error")
    except anthropic.BadRequestError as error:
        check("gateway: a bad request is a 400 naming the field", "max_tokens" in str(error.body), repr(error.body))
    try:
        with client.messages.stream(model="sim/error-mid-stream:pace_ms=1", **ask) as stream:
            "".join(stream.text_stream)
        check("gateway: a stream broken off raises", False, "no error")
    except anthropic.APIStatusError as error:
        check("gateway: a stream broken off raises", True, repr(error))
    print("anthropic SDK", anthropic.__version__, "all gateway checks passed")


if sys.argv[1:2] == ["--gateway"]:
    gateway_checks(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    sys.exit(0)

root = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        name = served["next"]
        body = open(os.path.join(root, name), "rb").read()
        self.send_response(200)
        self.send_header("content-type", "application/json" if name.endswith(".json") else "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{server.server_port}", api_key="unused", max_retries=0, timeout=10)
request = dict(model="fusion", max_tokens=100, messages=[{"role": "user", "content": "Should cities ban cars?"}])


served["next"] = "messages-tool-use.sse"
events = list(client.messages.create(stream=True, **request))
types = [event.type for event in events]
check("raw stream: every event read, pings skipped", types[0] == "message_start" and types[-1] == "message_stop"
      and "ping" not in types and len(types) == 18, repr(types))
with client.messages.stream(**request) as stream:
    final = stream.get_final_message()
kinds = [block.type for block in final.content]
check("helper: blocks", kinds == ["thinking", "text", "tool_use", "tool_use"], repr(kinds))
check("helper: thinking", final.content[0].thinking == "Thinking hard.", repr(final.content[0]))
check("helper: text", final.content[1].text == "Hello there", repr(final.content[1]))
check("helper: tool input", final.content[2].input == {"what": "a"} and final.content[2].name == "look"
      and final.content[3].input == {}, repr(final.content[2:]))
check("helper: stop reason", final.stop_reason == "tool_use", final.stop_reason)
check("helper: usage", final.usage.input_tokens == 30 and final.usage.output_tokens == 9
      and final.usage.cache_read_input_tokens == 20, repr(final.usage))

served["next"] = "messages-fusion.sse"
with client.messages.stream(**request) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
check("fusion: progress comments are invisible", text == "Drawing on a panel of 3 models.", repr(text))
check("fusion: usage", final.usage.output_tokens == 40 and final.usage.input_tokens == 120, repr(final.usage))
events = list(client.messages.create(stream=True, **request))
check("fusion: no extra events", [e.type for e in events][0] == "message_start" and len(events) == 7, repr([e.type for e in events]))

served["next"] = "messages-error.sse"
seen = []
try:
    for event in client.messages.create(stream=True, **request):
        seen.append(event.type)
    check("error event raises", False, repr(seen))
except anthropic.APIStatusError as error:
    check("error event raises", "overloaded_error" in str(error) and "content_block_delta" in seen, f"{error!r} after {seen}")

served["next"] = "messages-server-tools.sse"
with client.messages.stream(**request) as stream:
    final = stream.get_final_message()
kinds = [block.type for block in final.content]
check("server tools: blocks kept", kinds == ["server_tool_use", "web_search_tool_result", "text", "tool_use", "tool_use"], repr(kinds))
check("server tools: input and citations", final.content[0].input == {"query": "x"} and len(final.content[2].citations or []) == 1
      and final.content[2].citations[0].url == "https://x.example", repr(final.content[:3]))

served["next"] = "messages-whole.json"
message = client.messages.create(**request)
check("whole message", [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
      and message.content[2].input == {"what": "a"} and message.usage.output_tokens == 9, repr(message))
print("all checks passed")
