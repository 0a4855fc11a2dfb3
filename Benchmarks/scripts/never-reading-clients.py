#!/usr/bin/env python3
"""Resident memory of a gateway while N clients request fast, long streams and never read.

    never-reading-clients.py GATEWAY_BINARY [--clients 500] [--seconds 20]

Starts the gateway on the embedded default (simulated models, port chosen by the kernel), opens
N connections that each POST a streamed `sim/paced:pace_ms=0:deltas=100000` request and never
read a byte, and samples the gateway's RSS (from /proc) every second. Backpressure should bound
it: the client sockets fill, the gateway pauses its upstream transfers, the simulator waits.
"""
import argparse, json, os, re, socket, subprocess, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("binary")
parser.add_argument("--clients", type=int, default=500)
parser.add_argument("--seconds", type=int, default=20)
args = parser.parse_args()

proc = subprocess.Popen([args.binary, "serve", "--port", "0", "--log-level", "error"], stdout=subprocess.PIPE, text=True)
line = proc.stdout.readline()
port = int(re.search(r":(\d+) ", line).group(1))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for row in status:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    return 0

time.sleep(0.5)
idle = rss_kib(proc.pid)
body = json.dumps({"model": "sim/paced:pace_ms=0:deltas=100000", "stream": True,
                   "messages": [{"role": "user", "content": "go"}]}).encode()
request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
sockets = []
for _ in range(args.clients):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(request)
    sockets.append(s)
samples = []
for second in range(args.seconds):
    time.sleep(1)
    samples.append(rss_kib(proc.pid))
peak = max(samples)
print(json.dumps({"clients": args.clients, "idle_rss_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
                  "last_rss_mib": round(samples[-1] / 1024, 1), "per_client_kib": round((peak - idle) / args.clients, 1),
                  "samples_mib": [round(s / 1024, 1) for s in samples]}))
for s in sockets:
    s.close()
proc.terminate()
proc.wait(timeout=20)
