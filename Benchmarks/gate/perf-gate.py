#!/usr/bin/env python3
"""Counted (not timed) cost of a forwarded event in the running gateway: allocations and syscalls.

    perf-gate.py --binary .build/debug/fusion-gateway --counter malloc-counter.so [--budget budget.json]

Starts the mock upstream, then the gateway twice (one event loop, under `strace -f -c`, with the
allocation counter preloaded), each time serving STREAMS concurrent paced streams through the
pass-through proxy: SHORT deltas per stream the first time, LONG the second. Per forwarded event
is the difference between the two runs over the difference in events, so everything per process
(startup, shutdown) and per request cancels out; per request is what remains of the short run.
Allocations are counted only while the streams run (the counter's shared file is read before and
after); syscalls over the process's whole life, which cancels in the difference.

In the first run it also opens 8 streams whose requests carry a long conversation (--prompt-kib,
256 by default) and counts the heap held per open stream once each has its second event: a stream
must not hold the conversation it answers for as long as it streams.

With --nginx, nginx (one worker, proxy_buffering off, keep-alive upstream) is measured the same way
in the same run, in front of the same mock: the per-event budget of the best C proxy, for comparison.

Then the same two runs again without strace and with the mock unpaced (--burst-pace-ms, 0), for
allocations per event in a burst: what a busy machine does to a paced stream (its events coalesce
in the gateway's reads). Each read of a burst used to find the fan-in ring still holding the one
before, and the transfer paused and resumed for it: libcurl allocates on each, so the
paced figure read 0.0 on an idle machine and up to 0.9 on a busy one. Gating the burst keeps that
from coming back, and keeps the gate from depending on how busy the machine is.

Syscall counts do not depend on the machine's speed: a slow or busy machine may coalesce two events
into one read (fewer syscalls), never more. With --budget, exits 1 when a figure exceeds its budget.
"""
import argparse, json, os, re, signal, socket, struct, subprocess, sys, tempfile, threading, time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--binary", required=True, help="fusion-gateway binary")
parser.add_argument("--counter", required=True, help="malloc-counter.so (built from malloc-counter.c)")
parser.add_argument("--strace", default="strace")
parser.add_argument("--streams", type=int, default=4)
parser.add_argument("--short", type=int, default=20, help="deltas per stream in the first run")
parser.add_argument("--long", type=int, default=220, help="deltas per stream in the second run")
parser.add_argument("--pace-ms", type=int, default=2)
parser.add_argument("--burst-pace-ms", type=int, default=0, help="the mock's pace for the burst runs")
parser.add_argument("--budget", help="JSON budget file: fail when a figure exceeds it")
parser.add_argument("--json", help="write the figures here")
parser.add_argument("--prompt-kib", type=int, default=256, help="conversation size for the held-memory figure")
parser.add_argument("--nginx", nargs="?", const="/usr/sbin/nginx", help="also measure nginx (this binary) as a peer")
args = parser.parse_args()


def start(command, banner, env=None):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(re.escape(banner) + r"(\d+)", line)
    if not match:
        process.kill()
        sys.exit(f"perf-gate: unexpected output from {command[0]}: {line!r}")
    return process, int(match.group(1))


def stream(port, model, deltas, results, index):
    """One streamed completion; records (content events, all data events, saw [DONE])."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "gate"}]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        received = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    events = [line for line in payload.split(b"\n") if line.startswith(b"data: ")]
    content = sum(1 for line in events if b'"content":"' in line)
    results[index] = (content, len(events), b"data: [DONE]" in payload, head.split(b"\r\n")[0])


def run_streams(port, deltas, prefix="mock/", pace_ms=None):
    model = f"{prefix}paced:pace_ms={args.pace_ms if pace_ms is None else pace_ms}:deltas={deltas}"
    results = [None] * args.streams
    threads = [threading.Thread(target=stream, args=(port, model, deltas, results, i)) for i in range(args.streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if result is None or result[0] != deltas or not result[2]:
            sys.exit(f"perf-gate: a stream through the gateway was not complete: {result}")
    return sum(result[1] for result in results)


def held_per_stream(port, counts_file, streams=8):
    """Heap held per open stream whose request carried a long conversation: live bytes with
    `streams` streams open (each past its second event) less live bytes before, over `streams`.
    What a stream must hold is the upstream's copy of the request body (curl's) and its own
    state; the client's request, parsed or not, is not needed once an event reached the client."""
    text = "word " * (args.prompt_kib * 1024 // 5)
    body = json.dumps({"model": "mock/paced:pace_ms=400:deltas=10", "stream": True,
                       "messages": [{"role": "user", "content": text}]}).encode()
    before = read_counts(counts_file)["live_bytes"]
    connections = []
    for _ in range(streams):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        connections.append(connection)
    for connection in connections:
        received = b""
        while received.count(b"data: {") < 2:
            chunk = connection.recv(65536)
            if not chunk:
                sys.exit(f"perf-gate: a long-conversation stream ended early: {received[:300]!r}")
            received += chunk
    time.sleep(0.1)
    during = read_counts(counts_file)["live_bytes"]
    for connection in connections:
        connection.close()
    return (during - before) / streams


def read_counts(path):
    with open(path, "rb") as file:
        data = file.read(40)
    if len(data) < 40 or data[:8] != b"FGMALLOC":
        sys.exit("perf-gate: the allocation counter did not load (LD_PRELOAD)")
    allocations, frees, live, total = struct.unpack("<QQqQ", data[8:40])
    return {"allocations": allocations, "frees": frees, "live_bytes": live}


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(child) for child in file.read().split()]
    except OSError:
        return []


def parse_strace(path):
    counts = {}
    with open(path) as file:
        for line in file:
            fields = line.split()
            # "% time seconds usecs/call calls [errors] syscall"
            if len(fields) >= 5 and re.match(r"^[\d.]+$", fields[0]) and fields[-1] not in ("total",):
                try:
                    counts[fields[-1]] = int(fields[3])
                except ValueError:
                    pass
    return counts


def gateway_run(mock_port, deltas, workdir, label, pace_ms=None, traced=True):
    """One gateway process serving STREAMS streams of `deltas` each, at `pace_ms` (default
    --pace-ms); under strace when `traced` (the burst runs are not: their syscalls are not gated,
    and their held-memory figure is not taken)."""
    config = os.path.join(workdir, "gate.yaml")
    with open(config, "w") as file:
        file.write("upstream: {keepalive_interval_ms: 60000}\n"
                   f"providers:\n  mock: {{base_url: 'http://127.0.0.1:{mock_port}/v1'}}\n")
    counts_file = os.path.join(workdir, f"{label}.counts")
    strace_file = os.path.join(workdir, f"{label}.strace")
    serve = [args.binary, "serve", "--port", "0", "--loops", "1", "--config", config, "--log-level", "error"]
    if traced:
        command = [args.strace, "-f", "-c", "-o", strace_file,
                   "-E", f"LD_PRELOAD={os.path.abspath(args.counter)}", "-E", f"FG_MALLOC_COUNTS={counts_file}"] + serve
        environment = None
    else:
        command = serve
        environment = dict(os.environ, LD_PRELOAD=os.path.abspath(args.counter), FG_MALLOC_COUNTS=counts_file)
    gateway, port = start(command, "fusion-gateway listening on http://127.0.0.1:", env=environment)
    try:
        # Warm-up: the upstream connection pool, lazily created state, buffers grown to size.
        # The same in both runs, so that it cancels in the difference.
        for _ in range(2):
            run_streams(port, 5, pace_ms=pace_ms)
        # A response's record is filed just after its last bytes are written: let the last ones
        # finish before each reading, or a filing (tens of allocations) lands in one window or the
        # other by chance (per request read 411 in one run, 441 in the next).
        time.sleep(0.2)
        before = read_counts(counts_file)
        events = run_streams(port, deltas, pace_ms=pace_ms)
        time.sleep(0.2)
        after = read_counts(counts_file)
        held = held_per_stream(port, counts_file) if label == "short" and traced else None
    finally:
        # Stop the gateway itself (strace, its parent, then prints the counts and exits).
        for child in children(gateway.pid) if traced else [gateway.pid]:
            os.kill(child, signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
    if not traced:
        return {"events": events, "allocations": after["allocations"] - before["allocations"], "syscalls": {}, "held": None}
    syscalls = parse_strace(strace_file)
    if not syscalls:
        sys.exit("perf-gate: strace produced no counts")
    return {"events": events, "allocations": after["allocations"] - before["allocations"], "syscalls": syscalls, "held": held}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_run(mock_port, deltas, workdir, label):
    """nginx under the same counters: `strace -f` follows the master into its one worker."""
    port = free_port()
    config = os.path.join(workdir, f"{label}-nginx.conf")
    with open(config, "w") as file:
        file.write(f"""worker_processes 1; daemon off; pid {workdir}/{label}-nginx.pid; error_log {workdir}/{label}-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}; proxy_temp_path {workdir};
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 300s;
    }}
  }}
}}
""")
    counts_file = os.path.join(workdir, f"{label}-nginx.counts")
    strace_file = os.path.join(workdir, f"{label}-nginx.strace")
    command = [args.strace, "-f", "-c", "-o", strace_file,
               "-E", f"LD_PRELOAD={os.path.abspath(args.counter)}", "-E", f"FG_MALLOC_COUNTS={counts_file}",
               args.nginx, "-c", config, "-e", f"{workdir}/{label}-error.log"]
    nginx = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        else:
            sys.exit("perf-gate: nginx did not start")
        for _ in range(2):
            run_streams(port, 5, prefix="")
        before = read_counts(counts_file)
        events = run_streams(port, deltas, prefix="")
        after = read_counts(counts_file)
    finally:
        # SIGQUIT: graceful stop (master and worker exit; strace then prints the counts).
        for child in children(nginx.pid):
            os.kill(child, signal.SIGQUIT)
        try:
            nginx.wait(timeout=30)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()
    return {"events": events, "allocations": after["allocations"] - before["allocations"], "syscalls": parse_strace(strace_file)}


def per_event(short, long):
    """Figures per forwarded event (and per request) from a short and a long run."""
    events = long["events"] - short["events"]
    per_event_allocations = (long["allocations"] - short["allocations"]) / events
    names = sorted(set(short["syscalls"]) | set(long["syscalls"]))
    per_event_syscalls = {name: (long["syscalls"].get(name, 0) - short["syscalls"].get(name, 0)) / events for name in names}
    per_request_allocations = (short["allocations"] - per_event_allocations * short["events"]) / args.streams
    return {
        "allocations_per_event": round(per_event_allocations, 3),
        "syscalls_per_event": round(sum(per_event_syscalls.values()), 3),
        "syscalls_per_event_by_name": {name: round(value, 3) for name, value in per_event_syscalls.items() if abs(value) >= 0.005},
        "allocations_per_request": round(per_request_allocations, 1),
        "kib_held_per_stream_with_long_prompt": round(short["held"] / 1024, 1) if short.get("held") is not None else None,
        "events_compared": events,
    }


def describe(label, figures):
    by_name = sorted(figures["syscalls_per_event_by_name"].items(), key=lambda item: -item[1])
    print(f"{label} per forwarded event: {figures['allocations_per_event']} allocations, {figures['syscalls_per_event']} syscalls "
          f"({', '.join(f'{name} {value}' for name, value in by_name)})")
    print(f"{label} per request (proxied stream, beyond its events): {figures['allocations_per_request']} allocations")
    if figures.get("kib_held_per_stream_with_long_prompt") is not None:
        print(f"{label} heap held per open stream whose request carried {args.prompt_kib} KiB: "
              f"{figures['kib_held_per_stream_with_long_prompt']} KiB")


def main():
    with tempfile.TemporaryDirectory(prefix="perf-gate-") as workdir:
        mock, mock_port = start([args.binary, "mock-upstream", "--port", "0", "--log-level", "error"],
                                "mock upstream listening on http://127.0.0.1:")
        try:
            short = gateway_run(mock_port, args.short, workdir, "short")
            long = gateway_run(mock_port, args.long, workdir, "long")
            burst = per_event(gateway_run(mock_port, args.short, workdir, "short-burst", pace_ms=args.burst_pace_ms, traced=False),
                              gateway_run(mock_port, args.long, workdir, "long-burst", pace_ms=args.burst_pace_ms, traced=False))
            peer = None
            if args.nginx:
                peer = per_event(nginx_run(mock_port, args.short, workdir, "short"), nginx_run(mock_port, args.long, workdir, "long"))
        finally:
            mock.send_signal(signal.SIGINT)
            mock.wait(timeout=30)
    figures = per_event(short, long)
    figures["allocations_per_event_burst"] = burst["allocations_per_event"]
    describe("gateway", figures)
    print(f"gateway per forwarded event in a burst (mock pace {args.burst_pace_ms} ms): {burst['allocations_per_event']} allocations")
    if peer:
        describe("nginx", peer)
        figures["nginx"] = peer
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)
    if args.budget:
        with open(args.budget) as file:
            budget = json.load(file)
        failed = [f"{key} {figures[key]} > budget {limit}" for key, limit in budget.items()
                  if figures.get(key) is not None and figures[key] > limit]
        if failed:
            print("perf-gate: over budget: " + "; ".join(failed), file=sys.stderr)
            return 1
        print("perf-gate: within budget (" + ", ".join(f"{key} ≤ {limit}" for key, limit in budget.items()) + ")")
    return 0


sys.exit(main())
