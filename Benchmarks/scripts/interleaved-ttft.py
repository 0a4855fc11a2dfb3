#!/usr/bin/env python3
"""TTFT of several paths to the same upstream, interleaved request by request.

    interleaved-ttft.py --rounds 1000 direct=39701:paced:pace_ms=2:deltas=4 \
        nginx=8081:paced:pace_ms=2:deltas=4 gateway=8080:mock/paced:pace_ms=2:deltas=4 [--pid gateway=1234 ...]

Each target is NAME=PORT:MODEL (a streamed chat completion on 127.0.0.1:PORT). Every round sends
one request to each target, in a shuffled order, each on a new connection: every path runs on the
same machine state, and every path runs cold (the others ran in between), as a chat server's
requests do. TTFT is the time from sending the request to the first bytes carrying `data:`.
With --pid NAME=PID, the CPU time (user + system, from /proc) that process spent per request of
its target. Prints p50, p90 and p99 in microseconds.
"""
import argparse, os, random, socket, time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("targets", nargs="+", help="NAME=PORT:MODEL")
parser.add_argument("--rounds", type=int, default=1000)
parser.add_argument("--gap-ms", type=float, default=3, help="pause after each request")
parser.add_argument("--pid", action="append", default=[], help="NAME=PID: report that process's CPU per request")
args = parser.parse_args()

targets = []
for spec in args.targets:
    name, rest = spec.split("=", 1)
    port, model = rest.split(":", 1)
    targets.append((name, int(port), model))


def first_token_microseconds(port, model):
    body = ('{"model":"%s","stream":true,"messages":[{"role":"user","content":"hello there"}]}' % model).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic_ns()
        connection.sendall(request)
        received, first = b"", None
        while not received.endswith(b"0\r\n\r\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            if first is None and b"data:" in chunk:
                first = time.monotonic_ns()
            received += chunk
    if first is None:
        raise SystemExit(f"no event from port {port}: {received[:300]!r}")
    return (first - started) / 1e3


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


pids = dict(spec.split("=", 1) for spec in args.pid)
cpu_before = {name: cpu_ticks(pid) for name, pid in pids.items()}
results = {name: [] for name, _, _ in targets}
for _ in range(args.rounds):
    order = targets[:]
    random.shuffle(order)
    for name, port, model in order:
        results[name].append(first_token_microseconds(port, model))
        time.sleep(args.gap_ms / 1000)
for name, _, _ in targets:
    values = sorted(results[name])
    line = f"{name:10s} TTFT µs p50 {values[len(values) // 2]:6.0f}  p90 {values[len(values) * 9 // 10]:6.0f}  p99 {values[len(values) * 99 // 100]:6.0f}"
    if name in pids:
        ticks = cpu_ticks(pids[name]) - cpu_before[name]
        line += f"  CPU {ticks * 1e6 / os.sysconf('SC_CLK_TCK') / args.rounds:5.0f} µs per request"
    print(line)
