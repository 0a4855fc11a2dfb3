"""Drives the official `openai` Python SDK through a running fusion-gateway.

Usage: python openai_sdk_check.py BASE_URL   (e.g. http://127.0.0.1:8080/v1)
Exits non-zero with a message on the first failed check; prints one line per passed check.
"""
import json
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=10)
prompt = "Why is the sky blue?"


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


# Streaming: the SDK's own SSE decoder must see every delta and stop at [DONE].
stream = client.chat.completions.create(
    model="mock/normal:pace_ms=2",
    messages=[{"role": "user", "content": prompt}],
    stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
text = "".join(parts)
check("stream text", text.startswith("This is a simulated answer") and prompt in text, repr(text))
check("stream usage", usage is not None and usage.completion_tokens > 0, repr(usage))

# Non-streaming.
completion = client.chat.completions.create(
    model="mock/normal", messages=[{"role": "user", "content": prompt}], max_completion_tokens=50
)
content = completion.choices[0].message.content
check("non-stream text", content == text, f"{content!r} != {text!r}")
check("non-stream finish", completion.choices[0].finish_reason == "stop")

# Tool calls arrive as deltas the SDK can assemble.
stream = client.chat.completions.create(
    model="mock/tool-call:pace_ms=1",
    messages=[{"role": "user", "content": "weather in Paris?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    stream=True,
)
arguments = ""
for chunk in stream:
    for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
        arguments += call.function.arguments or ""
check("tool call arguments", arguments == '{"location":"Paris, France","unit":"celsius"}', arguments)

# A mid-stream upstream error raises APIError after the earlier deltas were delivered.
received = []
try:
    for chunk in client.chat.completions.create(
        model="mock/error-mid-stream:after=3:pace_ms=1",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
    check("mid-stream error raises", False, "no exception")
except openai.APIError as error:
    check("mid-stream error raises", "Provider disconnected" in str(error), str(error))
check("deltas before the error", "".join(received) == "This is a ", repr(received))

# Errors before the first byte surface as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="nope/model", messages=[{"role": "user", "content": "x"}])
    check("unknown model raises", False, "no exception")
except openai.NotFoundError as error:
    check("unknown model raises NotFoundError", "nope/model" in str(error), str(error))
try:
    client.chat.completions.create(model="mock/normal", messages=[{"role": "user", "content": "x"}], temperature=7)
    check("bad temperature raises", False, "no exception")
except openai.BadRequestError as error:
    check("bad temperature raises BadRequestError", error.body and error.body.get("param") == "temperature", str(error.body))

# The model list is readable by the SDK.
models = [model.id for model in client.models.list()]
check("models list", "sim/normal" in models, repr(models[:5]))
# The SDK's request id is the generation id.
raw = client.chat.completions.with_raw_response.create(model="sim/normal:pace_ms=1", messages=[{"role": "user", "content": "x"}])
completion = raw.parse()
check("request id", completion._request_id and completion._request_id == raw.headers.get("x-generation-id") == completion.id,
      f"{completion._request_id} {raw.headers.get('x-generation-id')} {completion.id}")
# The SDK percent-encodes the slash in the id (/v1/models/sim%2Fnormal).
model = client.models.retrieve("sim/normal:pace_ms=5")
check("models retrieve", model.id == "sim/normal:pace_ms=5", repr(model))
# Fusion, streamed: the deliberation arrives as SSE comments, which the SDK skips; the final
# answer arrives as ordinary chunks.
question = "Should cities ban cars from their centres?"
parts, ids, models = [], set(), set()
for chunk in client.chat.completions.create(
    model="fusion", messages=[{"role": "user", "content": question}], stream=True
):
    ids.add(chunk.id)
    models.add(chunk.model)
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
answer = "".join(parts)
check("fusion stream answer", answer.startswith("Drawing on a panel of 3 models") and "Where they agree" in answer, answer[:200])
check("fusion stream is one completion", len(ids) == 1 and models == {"mock/outer:pace_ms=1"}, f"{ids} {models}")

# Fusion, not streamed: one completion with the fusion result attached.
completion = client.chat.completions.create(model="fusion", messages=[{"role": "user", "content": question}])
check("fusion completion text", completion.choices[0].message.content == answer, completion.choices[0].message.content[:200])
fusion = (completion.model_extra or {}).get("fusion") or {}
check("fusion result attached", fusion.get("status") == "ok" and "consensus" in fusion.get("analysis", {}), str(fusion)[:200])
check("fusion usage breakdown", len(completion.usage.model_extra.get("fusion", {}).get("calls", [])) == 6, str(completion.usage))

# The server-tool form, through the SDK's extra_body-free path (tools accepts any dict).
completion = client.chat.completions.create(
    model="mock/outer:pace_ms=1",
    messages=[{"role": "user", "content": question}],
    tools=[{"type": "openrouter:fusion", "parameters": {"preset": "budget"}}],
    tool_choice="required",
)
fusion = (completion.model_extra or {}).get("fusion") or {}
check("server tool form", fusion.get("panel", {}).get("requested") == 2, str(fusion)[:200])

# A parallel turn: the outer model calls the caller's tool and fusion together. The turn comes
# back with the caller's call and the fusion call's record (reasoning_details); the SDK's own
# message object, sent back with the tool result, gives the model the whole turn.
tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
         {"type": "fusion", "parameters": {"preset": "budget"}}]
conversation = [{"role": "user", "content": "Please lookup the local rules and ask the panel about car bans"}]
turn = client.chat.completions.create(model="mock/outer:pace_ms=1:with_fusion=1", messages=conversation, tools=tools)
message = turn.choices[0].message
check("parallel turn: the caller's call", turn.choices[0].finish_reason == "tool_calls"
      and [call.function.name for call in message.tool_calls or []] == ["lookup"], repr(message)[:300])
records = (message.model_extra or {}).get("reasoning_details") or []
check("parallel turn: the fusion record", len(records) == 1 and records[0].get("type") == "reasoning.server_tool_call"
      and json.loads(records[0]["result"]).get("status") == "ok", repr(records)[:300])
conversation += [message, {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "Sundays only."}]
answer = client.chat.completions.create(model="mock/outer:pace_ms=1:with_fusion=1", messages=conversation, tools=tools)
text = answer.choices[0].message.content or ""
check("parallel turn: the next request sees both results", text.startswith("Drawing on a panel of 2 models")
      and "Sundays only." in text, text[:300])
# Streamed, the record arrives in a delta just before the finish.
streamed_records, finish = [], None
for chunk in client.chat.completions.create(model="mock/outer:pace_ms=1:with_fusion=1", messages=conversation[:1],
                                            tools=tools, stream=True):
    if chunk.choices:
        streamed_records += (chunk.choices[0].delta.model_extra or {}).get("reasoning_details") or []
        finish = chunk.choices[0].finish_reason or finish
check("parallel turn streamed", finish == "tool_calls" and len(streamed_records) == 1, repr(streamed_records)[:300])

print("openai SDK", openai.__version__, "all checks passed")

# Web tools: a panel member searches and reads the mock's simulated web; its sources come back
# as url_citation annotations, read through the SDK's own types (non-streamed) and from the
# delta (streamed), with the span of the cited link in the answer.
research = {
    "model": "mock/outer:pace_ms=1",
    "messages": [{"role": "user", "content": "What do studies say about congestion pricing?"}],
    "tools": [{"type": "openrouter:fusion", "parameters": {"analysis_models": ["mock/researcher:pace_ms=1"]}}],
    "tool_choice": "required",
}
message = client.chat.completions.create(**research).choices[0].message
annotations = message.annotations or []
check("citations as annotations", len(annotations) == 3 and annotations[0].type == "url_citation"
      and annotations[0].url_citation.url.endswith("/web/page/1"), repr(annotations)[:300])
first = annotations[0].url_citation
check("citation span", message.content[first.start_index:first.end_index] == f"[{first.title}]({first.url})",
      message.content[first.start_index:first.end_index])
streamed = []
for chunk in client.chat.completions.create(stream=True, **research):
    if chunk.choices:
        streamed += (chunk.choices[0].delta.model_extra or {}).get("annotations") or []
check("streamed annotations", [a["url_citation"]["url"] for a in streamed] == [a.url_citation.url for a in annotations],
      repr(streamed)[:300])
