"""Drives the official `openai` Python SDK's Responses client through our Responses streams.

Usage:
  python responses_sdk_check.py --fixtures DIR   replay the golden files in DIR (Fixtures/responses,
                                                 written by SurfacesTests) from a local HTTP server
  python responses_sdk_check.py BASE_URL         against a running fusion-gateway
                                                 (e.g. http://127.0.0.1:8080/v1, with its simulated models)

For each case it reads the stream twice: raw (its own SSE parser over urllib) and through the SDK.
Raw: every event is named for its `type`, numbered from 0, validated strictly against the SDK's
own pydantic model for its type (the SDK itself only `construct`s, so a wrong shape would pass
unnoticed there), no event carries a top-level `error` (the SDKs abort a stream on one) unless the
case asked for OpenRouter's exact `panel.failed`, text deltas add up to the final text, and the
`response.fusion_call.*` events of each fusion item come in order inside it. Through the SDK:
`responses.create(stream=True)` yields the same events with standard ones parsed into their own
classes, `responses.stream()` assembles the final response, and a non-streamed `create()` parses.
Exits non-zero at the first failed check; prints one line per passed check.
"""
import copy
import json
import sys
import threading
import typing
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
from openai.types.responses import Response, ResponseStreamEvent

# `responses.stream()` re-serializes what it `construct`ed, and pydantic warns when a value sits in
# a union member that does not fit: the fusion tool echoed in `tools`, the `openrouter:fusion`
# item. The values come through intact (checked below); the warnings are the SDK's, not a failure.
warnings.filterwarnings("ignore", message="Pydantic serializer warnings")

# The SDK's event union: type literal -> class (what a standard event must parse into).
SDK_EVENTS = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
TERMINALS = {"response.completed", "response.incomplete", "response.failed"}
FUSION = "response.fusion_call."


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)


def standard_only(response):
    """The response without what OpenAI's types do not know: OpenRouter's server tools in `tools`
    and the `openrouter:fusion` output item (both tolerated by the SDK, which does not validate)."""
    response = copy.deepcopy(response)
    response["tools"] = [t for t in response.get("tools") or [] if ":" not in t.get("type", "") and t.get("type") != "fusion"]
    response["output"] = [item for item in response.get("output") or [] if item.get("type") != "openrouter:fusion"]
    return response


def validate_strictly(name, event):
    cls = SDK_EVENTS.get(event["type"])
    if cls is None:
        return
    data = copy.deepcopy(event)
    if "response" in data:
        data["response"] = standard_only(data["response"])
    if data.get("item", {}).get("type") == "openrouter:fusion":
        return
    try:
        cls.model_validate(data)
    except Exception as error:  # the validation error is the observation
        check(f"{name}: {event['type']} matches the SDK's {cls.__name__}", False, f"{error}\n{json.dumps(event)[:600]}")


def post(base_url, body):
    """The body of a POST to /responses, read with the standard library (not the SDK's client)."""
    request = urllib.request.Request(base_url + "/responses", data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": "Bearer not-needed"})
    with urllib.request.urlopen(request, timeout=60) as response:
        check("status 200", response.status == 200, response.status)
        return response.read().decode()


def raw_events(base_url, body):
    """The stream's events as (event name, JSON), parsed here, not by the SDK."""
    events = []
    text = post(base_url, body)
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    check("raw stream ends with its last event", text.endswith("\n\n"), repr(text[-40:]))
    return events


def check_raw(name, events, allow_error_key=False):
    texts, finals = {}, {}
    for index, (event_name, event) in enumerate(events):
        check(f"{name}: event {index} named for its type", event_name == event["type"], (event_name, event["type"]))
        check(f"{name}: sequence_number {index}", event.get("sequence_number") == index, event)
        error_allowed = allow_error_key and event["type"] == FUSION + "panel.failed"
        check(f"{name}: no top-level error in {event['type']}", "error" not in event or error_allowed, event)
        check(f"{name}: only fusion events are unknown to the SDK", event["type"] in SDK_EVENTS or event["type"].startswith(FUSION), event["type"])
        validate_strictly(name, event)
        if event["type"] == "response.output_text.delta":
            texts[event["output_index"]] = texts.get(event["output_index"], "") + event["delta"]
        if event["type"] == "response.output_text.done":
            finals[event["output_index"]] = event["text"]
    check(f"{name}: starts with response.created", events[0][1]["type"] == "response.created")
    check(f"{name}: ends with one terminal event", events[-1][1]["type"] in TERMINALS
          and sum(e["type"] in TERMINALS for _, e in events) == 1)
    check(f"{name}: text deltas add up to the final text", texts == finals, (texts, finals))
    check_fusion_order(name, [e for _, e in events])
    print(f"ok   {name}: {len(events)} raw events valid")


def check_fusion_order(name, events):
    """Each fusion item's events: inside its added/done, in_progress first, completed last, each
    member added before its deltas and ended once, the analysis after every member ended."""
    added, done, runs = {}, {}, {}
    for index, event in enumerate(events):
        item = event.get("item") if event["type"].startswith("response.output_item.") else {}
        if item.get("type") == "openrouter:fusion":
            (added if event["type"] == "response.output_item.added" else done)[item["id"]] = index
        if event["type"].startswith(FUSION):
            runs.setdefault(event["item_id"], []).append((index, event["type"][len(FUSION):], event))
    for item_id, run in runs.items():
        names = [n for _, n, _ in run]
        check(f"{name}: fusion events inside their item", added.get(item_id, 10**9) < run[0][0] and run[-1][0] < done.get(item_id, -1))
        check(f"{name}: fusion run starts in_progress and ends completed", names[0] == "in_progress" and names[-1] == "completed", names)
        started, ended, analysing = set(), set(), False
        for _, step, event in run:
            member = event.get("index")
            if step == "panel.added":
                check(f"{name}: member {member} added once", member not in started)
                started.add(member)
            elif step in ("panel.delta", "panel.reasoning.delta", "panel.completed", "panel.failed"):
                check(f"{name}: {step} of a running member", member in started and member not in ended, (step, member))
                if step in ("panel.completed", "panel.failed"):
                    ended.add(member)
            elif step.startswith("analysis."):
                check(f"{name}: {step} after every member ended", ended == started and started, (step, started, ended))
                analysing = analysing or step == "analysis.in_progress"
                check(f"{name}: {step} after analysis.in_progress", analysing, step)
        check(f"{name}: every member ended", ended == started)


# OpenRouter's fields, which the SDK's typed arguments do not have: sent as `extra_body`.
EXTRA_FIELDS = ("plugins", "models")


def sdk_arguments(body):
    arguments = {key: value for key, value in body.items() if key != "stream" and key not in EXTRA_FIELDS}
    extra = {key: body[key] for key in EXTRA_FIELDS if key in body}
    if extra:
        arguments["extra_body"] = extra
    return arguments


def check_sdk(name, client, body, expect):
    """The same stream through the SDK's own readers."""
    body = sdk_arguments(body)
    if expect.get("sdk_raises"):
        seen = []
        try:
            for event in client.responses.create(stream=True, **body):
                seen.append(event.type)
            check(f"{name}: the SDK raises", False, "no exception")
        except openai.APIError:
            check(f"{name}: the SDK raises at panel.failed", seen[-1].startswith(FUSION), seen[-3:])
        print(f"ok   {name}: the openai SDK aborts on a top-level error, as documented")
        return
    events = list(client.responses.create(stream=True, **body))
    for event in events:
        cls = SDK_EVENTS.get(event.type)
        check(f"{name}: {event.type} parsed as {cls.__name__ if cls else 'a raw event'}",
              cls is None or type(event) is cls, type(event).__name__)
    fusion = [e.type[len(FUSION):] for e in events if e.type.startswith(FUSION)]
    check(f"{name}: fusion events arrive", bool(fusion) == expect.get("fusion", False), fusion)
    final = events[-1].response
    check(f"{name}: terminal {expect['terminal']}", events[-1].type == expect["terminal"], events[-1].type)
    check(f"{name}: output types", [item.type for item in final.output] == expect["output_types"], [i.type for i in final.output])
    if "output_text" in expect:
        check(f"{name}: output_text", final.output_text.startswith(expect["output_text"]), final.output_text[:200])
    if expect["terminal"] == "response.completed":
        with client.responses.stream(**body) as stream:
            assembled = stream.get_final_response()
        check(f"{name}: responses.stream() assembles it", assembled.output_text == final.output_text
              and [i.type for i in assembled.output] == expect["output_types"], assembled.output_text[:200])
        calls = [(i.call_id, i.name, i.arguments) for i in assembled.output if i.type == "function_call"]
        check(f"{name}: function calls", [c[1] for c in calls] == expect.get("function_calls", []), calls)
    print(f"ok   {name}: {len(events)} events through the SDK ({len(fusion)} fusion), {events[-1].type}")


def check_whole(name, client, base_url, body, expect):
    raw = json.loads(post(base_url, body))
    Response.model_validate(standard_only(raw))
    response = client.responses.create(**sdk_arguments(body))
    check(f"{name}: output types", [item.type for item in response.output] == expect["output_types"], [i.type for i in response.output])
    check(f"{name}: output_text", response.output_text.startswith(expect["output_text"]), response.output_text[:200])
    print(f"ok   {name}: a whole Response ({response.status})")


def run(cases):
    """`cases`: (name, base URL, request body, expectations)."""
    for name, base_url, body, expect in cases:
        client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=60)
        if not body.get("stream"):
            check_whole(name, client, base_url, body, expect)
            continue
        check_raw(name, raw_events(base_url, body), allow_error_key=expect.get("sdk_raises", False))
        check_sdk(name, client, body, expect)


FUSION_OUTPUT = ["message", "openrouter:fusion", "message"]
FIXTURE_CASES = [
    ("text.sse", {"terminal": "response.completed", "output_types": ["message"], "output_text": "Hello world"}),
    ("reasoning.sse", {"terminal": "response.completed", "output_types": ["reasoning", "message"], "output_text": "Answer."}),
    ("function-calls.sse", {"terminal": "response.completed", "output_types": ["message"] + ["function_call"] * 3,
                            "function_calls": ["get_weather", "lookup", "late"]}),
    ("incomplete.sse", {"terminal": "response.incomplete", "output_types": ["message"]}),
    ("failed.sse", {"terminal": "response.failed", "output_types": ["message"]}),
    ("fusion.sse", {"terminal": "response.completed", "output_types": FUSION_OUTPUT, "fusion": True, "output_text": "Let me consult"}),
    ("fusion-member-failed.sse", {"terminal": "response.completed", "output_types": FUSION_OUTPUT, "fusion": True}),
    ("fusion-judge-failed.sse", {"terminal": "response.completed", "output_types": FUSION_OUTPUT, "fusion": True}),
    ("fusion-all-failed.sse", {"terminal": "response.completed", "output_types": FUSION_OUTPUT, "fusion": True}),
    ("fusion-capped.sse", {"terminal": "response.completed", "output_types": ["openrouter:fusion"] * 2 + ["message"], "fusion": True}),
    ("fusion-openrouter-events.sse", {"sdk_raises": True}),
    ("text.json", {"output_types": ["reasoning", "message", "function_call"], "output_text": "Hello"}),
    ("fusion.json", {"output_types": FUSION_OUTPUT, "output_text": "Let me consult the panel. Yes: adopt a monorepo"}),
]


def serve_fixtures(directory):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # /fx/<file>/responses
            self.rfile.read(int(self.headers.get("content-length") or 0))
            data = (directory / self.path.split("/")[2]).read_bytes()
            self.send_response(200)
            self.send_header("content-type", "application/json" if self.path.split("/")[2].endswith(".json") else "text/event-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def gateway_cases():
    question = "Should cities ban cars from their centres?"
    fusion_tool = {"type": "openrouter:fusion", "parameters": {"analysis_models": ["sim/expert-1", "sim/error"]}}
    return [
        ("plain", {"model": "sim/normal:pace_ms=1", "input": "Why is the sky blue?", "stream": True},
         {"terminal": "response.completed", "output_types": ["message"], "output_text": "This is a simulated answer"}),
        ("plain whole", {"model": "sim/normal", "input": "Why is the sky blue?"},
         {"output_types": ["message"], "output_text": "This is a simulated answer"}),
        ("function call", {"model": "sim/tool-call:pace_ms=1", "input": "weather in Paris?", "stream": True,
                           "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]},
         {"terminal": "response.completed", "output_types": ["function_call"], "function_calls": ["get_weather"]}),
        ("fusion", {"model": "fusion", "input": question, "stream": True},
         {"terminal": "response.completed", "output_types": ["openrouter:fusion", "message"], "fusion": True,
          "output_text": "Drawing on a panel"}),
        ("fusion whole", {"model": "fusion", "input": question},
         {"output_types": ["openrouter:fusion", "message"], "output_text": "Drawing on a panel"}),
        ("fusion with a failing member", {"model": "sim/outer:pace_ms=1", "input": question, "stream": True,
                                          "tools": [fusion_tool], "tool_choice": "required"},
         {"terminal": "response.completed", "output_types": ["openrouter:fusion", "message"], "fusion": True}),
        ("fusion plugin", {"model": "sim/outer:pace_ms=1", "input": question, "stream": True,
                           "plugins": [{"id": "fusion", "preset": "budget"}]},
         {"terminal": "response.completed", "output_types": ["openrouter:fusion", "message"], "fusion": True}),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fixtures"]:
        directory = Path(sys.argv[2])
        server = serve_fixtures(directory)
        run([(name, f"{server}/fx/{name}", {"model": "fixture", "input": "hi", "stream": name.endswith(".sse")}, expect)
             for name, expect in FIXTURE_CASES])
    else:
        base_url = sys.argv[1]
        run([(name, base_url, body, expect) for name, body, expect in gateway_cases()])
        client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
        try:
            client.responses.create(model="sim/normal", input="x", previous_response_id="resp_1")
            check("previous_response_id refused", False, "accepted")
        except openai.BadRequestError as error:
            check("previous_response_id refused", error.body and error.body.get("param") == "previous_response_id", error.body)
        print("ok   previous_response_id is a 400 naming it")
    print("openai SDK", openai.__version__, "all responses checks passed")
