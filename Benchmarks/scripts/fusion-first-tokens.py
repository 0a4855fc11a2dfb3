#!/usr/bin/env python3
"""Time to the first panel token and to the first final-answer token of Fusion requests,
forced (`tool_choice: "required"`) and not, through one or more gateway binaries, in one run.

    fusion-first-tokens.py BINARY [BINARY…] [--runs 20] [--config FILE] [--question TEXT]
                           [--panel MODEL,MODEL] [--judge MODEL] [--outer MODEL]

Each binary is started with `serve --port 0` (the embedded simulator unless --config), then the
runs alternate between binaries and between forced and unforced requests, so every combination
sees the same machine load. Times are measured by this client from sending the request: the
first `fusion.member.delta` event, and the first content chunk after `fusion.final`.
Prints p50/p90 per binary and kind, in milliseconds.
"""
import argparse, http.client, json, re, statistics, subprocess, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("binaries", nargs="+")
parser.add_argument("--runs", type=int, default=20)
parser.add_argument("--config")
parser.add_argument("--question", default="Should cities ban cars from their centres?")
parser.add_argument("--panel", help="comma-separated analysis_models (default: the config's preset)")
parser.add_argument("--judge")
parser.add_argument("--outer", default="fusion")
parser.add_argument("--max-tokens", type=int, help="max_completion_tokens for panel and judge, max_tokens for the outer model")
args = parser.parse_args()


def start(binary):
    command = [binary, "serve", "--port", "0", "--log-level", "error"]
    if args.config:
        command += ["--config", args.config]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        sys.exit(f"{binary}: no port in {line!r}")
    return proc, int(match.group(1))


def one(port, forced):
    parameters = {}
    if args.panel:
        parameters["analysis_models"] = args.panel.split(",")
    if args.judge:
        parameters["model"] = args.judge
    if args.max_tokens:
        parameters["max_completion_tokens"] = args.max_tokens
    body = {"model": args.outer, "stream": True, "stream_options": {"include_fusion_events": True},
            "messages": [{"role": "user", "content": args.question}]}
    if args.outer in ("fusion", "openrouter/fusion"):
        if parameters:
            body["plugins"] = [dict(id="fusion", **parameters)]
            if not forced:
                body.pop("plugins")  # the plugin always forces: unforced runs use the tool
                body["tools"] = [{"type": "fusion", "parameters": parameters}]
        else:
            body["tools"] = [{"type": "fusion", "parameters": {}}]
    else:
        body["tools"] = [{"type": "fusion", "parameters": parameters}]
    if args.max_tokens:
        body["max_tokens"] = args.max_tokens
    if forced:
        body["tool_choice"] = "required"
    data = json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    first_panel = first_final = None
    deliberated = in_final = False
    name = ""
    while True:
        line = response.readline()
        if not line:
            break
        line = line.decode().rstrip("\r\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            payload = line[5:].strip()
            now = time.perf_counter()
            if name == "fusion.member.delta" and first_panel is None:
                first_panel = now - sent
            elif name == "fusion.tool.called":
                deliberated = True
            elif name == "fusion.final":
                in_final = True
            elif name == "" and in_final and first_final is None and payload != "[DONE]":
                delta = (json.loads(payload).get("choices") or [{}])[0].get("delta", {})
                if delta.get("content"):
                    first_final = now - sent
        elif line == "":
            name = ""
    connection.close()
    if not deliberated or first_panel is None or first_final is None:
        return None
    return first_panel * 1000, first_final * 1000


servers = [start(binary) for binary in args.binaries]
try:
    for _, port in servers:  # warm up each: connections, caches
        one(port, True)
        one(port, False)
    results = {(i, forced): [] for i in range(len(servers)) for forced in (False, True)}
    failures = 0
    for run in range(args.runs):
        for i, (_, port) in enumerate(servers):
            for forced in ((False, True) if run % 2 == 0 else (True, False)):
                measured = one(port, forced)
                if measured is None:
                    failures += 1
                else:
                    results[(i, forced)].append(measured)
    print(f"{args.runs} runs per binary and kind, {failures} without a deliberation; ms from sending the request")
    print(f"{'binary':<40} {'kind':<9} {'panel p50':>10} {'panel p90':>10} {'final p50':>10} {'final p90':>10}")
    for (i, forced), values in results.items():
        if not values:
            continue
        panel = sorted(v[0] for v in values)
        final = sorted(v[1] for v in values)
        p90 = lambda xs: xs[min(len(xs) - 1, int(len(xs) * 0.9))]
        print(f"{args.binaries[i][-40:]:<40} {'forced' if forced else 'unforced':<9} {statistics.median(panel):>10.1f} "
              f"{p90(panel):>10.1f} {statistics.median(final):>10.1f} {p90(final):>10.1f}")
finally:
    for proc, _ in servers:
        proc.terminate()
        proc.wait()
