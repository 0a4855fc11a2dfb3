#!/usr/bin/env python3
"""CPU time a gateway spends per streamed deliberation, two or more builds alternating in blocks.

    deliberation-cpu.py new=../.build/release/fusion-gateway old=/path/to/older/fusion-gateway \
        [--blocks 6] [--per-block 20]

Each build serves on its own port (one loop) in front of one simulated upstream (the first
build's `mock-upstream`), with latency-bench's Fusion panel (three members, the judge and the
outer model's two calls, at a 2 ms pace). Deliberations run one at a time, `--per-block` of
them on one build, then on the next, `--blocks` times, so a slow minute on the machine falls on
every build; the CPU time (user and system, from /proc, 10 ms ticks: hence blocks of many) that
each process spent over its deliberations is divided by their number. Timed, unlike
instructions-per-request.py --fusion (which counts user-space instructions exactly): this one
includes the kernel's share and what instructions cost on this machine.
"""
import argparse, os, subprocess, tempfile

from loopback import FUSION_BODY, free_port, stream, wait_for

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("builds", nargs="+", help="NAME=BINARY")
parser.add_argument("--blocks", type=int, default=6)
parser.add_argument("--per-block", type=int, default=20)
args = parser.parse_args()
builds = dict(item.split("=", 1) for item in args.builds)


def cpu(pid, fields=(11, 12)):
    """utime and stime (fields 14 and 15 of /proc/PID/stat), in seconds."""
    values = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(values[index]) for index in fields) / os.sysconf("SC_CLK_TCK")


work = tempfile.mkdtemp(prefix="deliberation-cpu-")
mock_port = free_port()
config = os.path.join(work, "gateway.yaml")
with open(config, "w") as file:
    file.write(f"upstream: {{keepalive_interval_ms: 60000}}\nproviders:\n  mock: {{base_url: 'http://127.0.0.1:{mock_port}/v1'}}\n"
               "fusion:\n  outer_model: 'mock/outer:pace_ms=2'\n  presets:\n    quality: {analysis_models: "
               "['mock/expert-1:pace_ms=2', 'mock/expert-2:pace_ms=2', 'mock/expert-3:pace_ms=2']}\n")
processes = [subprocess.Popen([next(iter(builds.values())), "mock-upstream", "--port", str(mock_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
gateways = {}
try:
    wait_for(mock_port)
    for name, binary in builds.items():
        port = free_port()
        process = subprocess.Popen([binary, "serve", "--loops", "1", "--port", str(port), "--config", config, "--log-level", "error"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        gateways[name] = (process, port)
        wait_for(port)
        for _ in range(5):  # warm
            stream(port, FUSION_BODY)
    total = {name: 0.0 for name in builds}
    user = {name: 0.0 for name in builds}
    for _ in range(args.blocks):
        for name, (process, port) in gateways.items():
            before, user_before = cpu(process.pid), cpu(process.pid, (11,))
            for _ in range(args.per_block):
                stream(port, FUSION_BODY)
            total[name] += cpu(process.pid) - before
            user[name] += cpu(process.pid, (11,)) - user_before
    count = args.blocks * args.per_block
    for name in builds:
        print(f"{name}: {total[name] / count * 1e3:.2f} ms CPU per deliberation (user {user[name] / count * 1e3:.2f}), {count} deliberations")
finally:
    for process in processes:
        process.terminate()
        process.wait()
