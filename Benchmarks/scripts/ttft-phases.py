#!/usr/bin/env python3
"""Where a proxied request's time to first token goes, phase by phase, in a running process.

    ttft-phases.py --pid PID [--binary PATH] --seconds 40      # while a load runs (one loop)

Puts uprobes (`perf probe`, root) on libcurl's entry points and, with --binary, on the
gateway's own functions along the first token's path (found by their mangled names with `nm`),
records them with the syscalls that bound each phase (accept, the request's read, the upstream
write and read, the client write), and prints the median time between consecutive marks over
every request seen, from `accept4` to the first `write` to the client. Without --binary only
syscalls are marked, which times nginx (or any proxy) the same way. Each probe costs about a
microsecond; compare figures taken with the same probes. Run the load with one request at a
time (`interleaved-ttft.py`): the marks of concurrent requests would interleave.
"""
import argparse, collections, os, re, statistics, subprocess, sys, tempfile, time

# The gateway's marks on the first token's path: name -> a pattern of its mangled symbol.
GATEWAY_MARKS = [
    ("decode", r"HTTPRequestDecoderC6decodeySi8consumed_AC5EventO5eventtSWAA13HTTPRejectionOYKF$"),
    ("head_guard", r"0A6ServerC9guardHead33_\w+LLy10HTTPServer12HTTPResponseVSgAF11HTTPRequestVF$"),
    ("handle", r"0A6ServerC6handle33_\w+LLyy10HTTPServer11HTTPRequestV_AF18HTTPResponseWriterCtF$"),
    ("new_record", r"0A6ServerC9newRecord_3apiAA010GenerationD0V10HTTPServer11HTTPRequestV_AA9ClientAPIOtF$"),
    ("parse_chat", r"11ChatRequestV4bodyACSays5UInt8VG_t11GatewayCore8APIErrorVYKcfC$"),
    ("prepare_proxy", r"0A6ServerC12prepareProxy33_\w+LL_9fallbacks5depth4hops6writer6record9startedAt6prompt3logyycx_SaySSGS2i10HTTPServer18HTTPResponseWriterCAA16GenerationRecordVs6UInt64VSSSg7Logging6LoggerVt0A4Core8APIErrorVYKAA0D7RequestRzlF$"),
    ("proxy_start", r"15CompletionProxyC5startyyF$"),
    ("transfer_start", r"9CurlMultiC5startyAA0A8TransferCAA0A7RequestVF$"),
    ("upstream_head", r"15CompletionProxyC19upstreamDidSendHead6status7headersySi_SaySS_SStGtF$"),
    ("upstream_body", r"15CompletionProxyC15upstreamDidSendySbSWF$"),
    ("client_head", r"18HTTPResponseWriterC11startStream6status7headersySi_SaySS_SStGtF$"),
]
CURL = "/usr/lib/x86_64-linux-gnu/libcurl.so.4"
CURL_MARKS = ["curl_multi_add_handle", "curl_multi_socket_action"]
SYSCALLS = ["accept4", "read", "recvfrom", "sendto", "write", "writev"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--pid", required=True, type=int)
parser.add_argument("--binary", help="the gateway's binary: mark its own functions too")
parser.add_argument("--seconds", type=float, default=30)
parser.add_argument("--mark", action="append", default=[], metavar="NAME=REGEX",
                    help="one more of the gateway's functions to mark (a regex of its mangled name), to split a phase")
args = parser.parse_args()


def run(*command):
    return subprocess.run(command, capture_output=True, text=True)


events = [f"syscalls:sys_enter_{name}" for name in SYSCALLS] + ["syscalls:sys_exit_read", "syscalls:sys_exit_recvfrom",
                                                                  "syscalls:sys_exit_accept4"]
added = []
if args.binary:
    symbols = {line.split()[-1]: line.split()[0] for line in run("nm", args.binary).stdout.splitlines() if re.match(r"^\w+ [tT] ", line)}
    for name, pattern in GATEWAY_MARKS + [tuple(mark.split("=", 1)) for mark in args.mark]:
        matches = [symbol for symbol in symbols if re.search(pattern, symbol)]
        if len(matches) != 1:
            print(f"mark {name}: {len(matches)} symbols match; skipped", file=sys.stderr)
            continue
        address = symbols[matches[0]]
        result = run("perf", "probe", "-q", "-x", args.binary, "-a", f"fg:{name}=0x{address}")
        if result.returncode == 0:
            events.append(f"fg:{name}")
            added.append(f"fg:{name}")
    for name in CURL_MARKS:
        result = run("perf", "probe", "-q", "-x", CURL, "-a", f"fgcurl:{name}={name}")
        if result.returncode == 0:
            events.append(f"fgcurl:{name}")
            added.append(f"fgcurl:{name}")

with tempfile.TemporaryDirectory() as folder:
    data = os.path.join(folder, "perf.data")
    command = ["perf", "record", "-q", "-o", data, "-p", str(args.pid)]
    for event in events:
        command += ["-e", event]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    print(f"recording for {args.seconds:g} s: run the load now", file=sys.stderr, flush=True)
    time.sleep(args.seconds)
    recorder.send_signal(2)
    recorder.wait()
    script = run("perf", "script", "-i", data, "-F", "time,event,trace").stdout
for event in added:
    run("perf", "probe", "-q", "-d", event)

# Each request: from an accept4 (the listener's drain of its backlog makes two in a row) to the
# first write to the client's connection (the fd of the first read after the accept) after a read
# from another fd (the upstream's); the phases are the marks between, repeated ones numbered.
marks = []
for line in script.splitlines():
    match = re.match(r"\s*([0-9.]+):\s+(\S+):\s*(.*)", line)
    if not match:
        continue
    seconds, event, trace = match.groups()
    name = event.split(":")[-1].removeprefix("sys_")
    fd = re.search(r"fd: (0x[0-9a-f]+)", trace)
    if name == "exit_accept4":
        # The listener drains its backlog until accept4 fails (EAGAIN), which may come after a
        # request's first steps (one read at once after the accept): a failed accept starts no
        # request, so its mark goes.
        value = re.search(r"(0x[0-9a-f]+|-?[0-9]+)\s*$", trace)
        result = int(value.group(1), 0) if value else 0
        if result < 0 or result >= 1 << 63:
            for position in range(len(marks) - 1, -1, -1):
                if marks[position][1] == "enter_accept4":
                    del marks[position]
                    break
        continue
    marks.append((float(seconds), name, int(fd.group(1), 16) if fd else None))

READS = ("enter_read", "enter_recvfrom")
WRITES = ("enter_write", "enter_writev", "enter_sendto")
phases = collections.defaultdict(list)
starts = collections.defaultdict(list)  # when each phase began, from the accept: their order
requests = 0
index = 0
while index < len(marks):
    if marks[index][1] != "enter_accept4":
        index += 1
        continue
    request = [marks[index]]
    index += 1
    client = None
    upstream_read = False
    complete = False
    while index < len(marks) and marks[index][1] != "enter_accept4":
        mark = marks[index]
        index += 1
        if mark[1] in WRITES and mark[2] == 2:
            continue  # a log line
        request.append(mark)
        if mark[1] in READS:
            if client is None:
                client = mark[2]
            elif mark[2] != client:
                upstream_read = True
        elif mark[1] in WRITES and upstream_read and mark[2] == client:
            complete = True
            break
    if not complete:
        continue
    requests += 1
    seen = collections.Counter()
    previous = None
    for seconds, name, _ in request:
        seen[name] += 1
        label = name if seen[name] == 1 else f"{name}#{seen[name]}"
        if previous:
            key = f"{previous[1]} -> {label}"
            phases[key].append(seconds - previous[0])
            starts[key].append(previous[0] - request[0][0])
        previous = (seconds, label)
    phases["total"].append(request[-1][0] - request[0][0])

print(f"{requests} requests; median µs per phase (phases seen in at least 80% of requests):")
total = 0.0
for key in sorted(starts, key=lambda key: statistics.median(starts[key])):
    values = phases[key]
    if len(values) < 0.8 * requests:
        continue
    median = statistics.median(values) * 1e6
    total += median
    print(f"  {median:7.1f}  {key}")
print(f"  {total:7.1f}  sum of the medians above")
values = phases["total"]
if values:
    print(f"  {statistics.median(values) * 1e6:7.1f}  median total, accept -> first client write")
