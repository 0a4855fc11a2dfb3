"""Replays the gateway's /v1/messages output (Fixtures/surfaces/messages-*) to the official
`anthropic` Python SDK over loopback: its raw event stream, its `messages.stream()` helper (which
needs every event named, message_start first, dense block indexes and usage on message_delta),
its error handling, and a whole message.

Usage: python anthropic_sdk_check.py FIXTURES_DIR
Exits non-zero with a message on the first failed check; prints one line per passed check.
"""
import http.server
import os
import sys
import threading

import anthropic

root = sys.argv[1]
served = {}


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


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


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

served["next"] = "messages-whole.json"
message = client.messages.create(**request)
check("whole message", [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
      and message.content[2].input == {"what": "a"} and message.usage.output_tokens == 9, repr(message))
print("all checks passed")
