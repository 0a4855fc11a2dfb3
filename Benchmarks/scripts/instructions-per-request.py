#!/usr/bin/env python3
"""Instructions a gateway spends per proxied streamed request, counted by Valgrind's callgrind.

    instructions-per-request.py --binary .build/release/fusion-gateway [--requests 200] [--top 25] [--fusion]

Counted, not timed: the same build and requests give the same figures on a busy machine or an
idle one (within a fraction of a percent), so two builds compare exactly, and the split says
where a request's CPU goes: by library (the gateway's own code, the Swift runtime and standard
library, libc, libcurl, libuv) and by function (self and inclusive). It needs `valgrind`
(Debian's package); callgrind runs the gateway some 50 times slower, one loop.

What it does: runs the binary's own simulated upstream (`mock-upstream`) on a free port, and
the gateway under callgrind with one loop in front of it; sends warm-up requests, zeroes the
counts, sends --requests streamed chat completions one at a time (`mock/paced:pace_ms=2:deltas=4`,
as `interleaved-ttft.py` does: 7 events each), dumps the counts and summarizes them. With --fusion each request is a streamed deliberation
instead (`"model":"fusion"`, as `latency-bench --fusion` sends it: three members, the judge and
the outer model's two calls, six upstream calls), so the figure is instructions per deliberation
and the split shows what the orchestration adds to six proxied calls. Valgrind
3.19 cannot read the DWARF 5 that Swift writes, so it runs a copy of the binary without its
debug sections (symbols kept).
"""
import argparse, collections, os, re, shutil, subprocess, sys, tempfile

from loopback import FUSION_BODY, free_port, stream, wait_for

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--binary", required=True)
parser.add_argument("--requests", type=int, default=200)
parser.add_argument("--warmup", type=int, default=20)
parser.add_argument("--top", type=int, default=25, help="functions listed, by self and by inclusive count")
parser.add_argument("--model", default="mock/paced:pace_ms=2:deltas=4")
parser.add_argument("--fusion", action="store_true", help="count streamed deliberations instead of proxied requests")
parser.add_argument("--keep", metavar="FILE", help="keep callgrind's counts there (for callgrind_annotate --tree=caller)")
args = parser.parse_args()

for tool in ("valgrind", "callgrind_control", "strip"):
    if shutil.which(tool) is None:
        sys.exit(f"{tool} not found (apt-get install valgrind binutils)")


def request(port):
    body = FUSION_BODY if args.fusion else ('{"model":"%s","stream":true,"messages":[{"role":"user","content":"hello there"}]}'
                                            % args.model).encode()
    stream(port, body)


def demangled(names):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return out[:len(names)] if len(out) >= len(names) else names
    except (OSError, subprocess.CalledProcessError):
        return names


def costs(path):
    """Self and inclusive instruction counts per (object, function), from callgrind's output."""
    names = {"ob": {}, "fn": {}}
    own, inclusive = collections.Counter(), collections.Counter()
    current_ob = current_fn = called = None
    in_call = False
    for line in open(path):
        line = line.rstrip("\n")
        match = re.match(r"(c?)(ob|fn)=\((\d+)\)(?: (.*))?$", line)
        if match:
            callee, kind, number, name = match.groups()
            if name:
                names[kind][number] = name
            if not callee:
                if kind == "ob":
                    current_ob = names["ob"][number]
                else:
                    current_fn = (current_ob, names["fn"][number])
            elif kind == "fn":
                called = names["fn"][number]
            continue
        if line.startswith("calls="):
            in_call = True
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            fields = line.split()
            if len(fields) < 2:
                continue
            count = int(fields[1])
            if in_call:
                in_call = False
                if called != current_fn[1]:  # a recursive call counts once
                    inclusive[current_fn] += count
            else:
                own[current_fn] += count
                inclusive[current_fn] += count
    return own, inclusive


work = tempfile.mkdtemp(prefix="instructions-")
binary = os.path.join(work, "fusion-gateway")
subprocess.run(["strip", "--strip-debug", "-o", binary, args.binary], check=True)
upstream_port, gateway_port = free_port(), free_port()
config = os.path.join(work, "gateway.yaml")
with open(config, "w") as file:
    file.write(f"server:\n  host: 127.0.0.1\n  port: {gateway_port}\nsimulated_models: false\n"
               f"providers:\n  mock:\n    kind: openai\n    base_url: http://127.0.0.1:{upstream_port}/v1\n")
    if args.fusion:  # latency-bench's panel, at the pace of --model's pace_ms
        pace = re.search(r"pace_ms=(\d+)", args.model)
        pace = pace.group(1) if pace else "2"
        file.write(f"fusion:\n  outer_model: 'mock/outer:pace_ms={pace}'\n  presets:\n    quality: {{analysis_models: "
                   f"['mock/expert-1:pace_ms={pace}', 'mock/expert-2:pace_ms={pace}', 'mock/expert-3:pace_ms={pace}']}}\n")
upstream = subprocess.Popen([args.binary, "mock-upstream", "--port", str(upstream_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
output = os.path.join(work, "callgrind.out")
gateway = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
                            binary, "serve", "--loops", "1", "--config", config],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "gateway.log"), "w"))
try:
    wait_for(upstream_port, 30)
    wait_for(gateway_port, 120)
    for _ in range(args.warmup):
        request(gateway_port)
    subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True, capture_output=True)
    for _ in range(args.requests):
        request(gateway_port)
    subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
finally:
    gateway.terminate()
    upstream.terminate()
    gateway.wait()
    upstream.wait()

dumps = sorted(name for name in os.listdir(work) if name.startswith("callgrind.out.") and os.path.getsize(os.path.join(work, name)) > 0)
if not dumps:
    sys.exit(f"callgrind wrote no counts (its log: {work}/gateway.log)")
own, inclusive = costs(os.path.join(work, dumps[0]))
total = sum(own.values())
per = args.requests
what = "deliberation" if args.fusion else "request"
print(f"{args.binary}: {total / per:,.0f} instructions per {what} ({args.requests} {what}s, "
      f"{'fusion, six upstream calls' if args.fusion else args.model}, one loop)")
print("\nby library (self):")
libraries = collections.Counter()
for (library, _), count in own.items():
    libraries[os.path.basename(library or "?")] += count
for library, count in libraries.most_common(8):
    print(f"  {count / per:>10,.0f}  {count / total:6.1%}  {library}")
# Inclusive: the gateway's own functions below the loop's frames (thunks and the frames every
# request runs under say nothing of where it goes).
steps = collections.Counter({key: count for key, count in inclusive.items()
                             if os.path.basename(key[0] or "") not in ("libc.so.6", "libuv.so.1.0.0", "libFoundation.so")
                             and count < 0.6 * total})
for title, counter in (("self", own), ("inclusive", steps)):
    print(f"\nfunctions by {title} instructions per request:")
    top = counter.most_common(args.top * 2 if counter is steps else args.top)
    for ((library, _), count), name in zip(top, demangled([function for (_, function), _ in top])):
        if counter is steps and name.startswith(("partial apply for", "@objc ", "protocol witness for", "reabstraction thunk")):
            continue
        print(f"  {count / per:>10,.0f}  {count / total:6.1%}  {name[:110]}  [{os.path.basename(library or '?')}]")
if args.keep:
    shutil.copyfile(os.path.join(work, dumps[0]), args.keep)
shutil.rmtree(work, ignore_errors=True)
