#!/usr/bin/env python3
"""A heaptrack recording's peak heap, per open stream, split by owner.

    heap-by-owner.py gateway.zst STREAMS

For a recording made by `stream-memory.py --heaptrack` (STREAMS streams held at the peak). Each
allocation belongs to the innermost of libcurl or a gateway type on its stack: libcurl's own
(split into the easy handle, its receive buffer and the connection and request state), or the
gateway's (our code, including what it allocates inside curl's callbacks). Prints bytes per
stream, largest first; owners under 40 bytes per stream are left out.
"""
import collections, subprocess, sys, tempfile

recording, streams = sys.argv[1], int(sys.argv[2])


def stacks(cost):
    with tempfile.NamedTemporaryFile(mode="r", suffix=".txt") as out:
        subprocess.run(["heaptrack_print", "-f", recording, "--print-peaks", "0", "--print-allocators", "0",
                        "--print-temporary", "0", "--print-leaks", "0", "--flamegraph-cost-type", cost, "-F", out.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        totals = collections.Counter()
        for line in out:
            stack, _, value = line.rstrip().rpartition(" ")
            totals[stack] += int(value)
        return totals


OWNERS = [("FanInBuffer", "fan-in ring"), ("FanInChannel", "fan-in channel and its wakeup"),
          ("ByteQueue", "client write queue"), ("CompletionProxy", "the proxy (its record, accounting, timers)"),
          ("StreamWatchdog", "the proxy (its record, accounting, timers)"), ("ChatStreamRelay", "the relay"),
          ("HTTPServer", "client connection (decoder, writer, request)"),
          ("TCP", "client connection (decoder, writer, request)"), ("LoopHandle", "libuv handles"),
          ("UpstreamTransfer", "upstream transfer (ours)"), ("CurlMulti", "upstream transfer (ours)"),
          ("SocketWatcher", "upstream transfer (ours)")]


def owner(frames, peak, count):
    for frame in reversed(frames):
        if "libcurl" in frame or frame.startswith("curl_"):
            if any("curl_easy_init" in f for f in frames):
                return "curl: the easy handle"
            if count and round(peak / count) == 2049:
                return "curl: the receive buffer (CURLOPT_BUFFERSIZE 2048)"
            return "curl: connection and request state"
        if frame.startswith("$s") and not frame.startswith(("$ss", "$sS")):  # ours, not the standard library's
            return "gateway: " + next((name for key, name in OWNERS if key in frame), "other")
    return "other (runtime, libc)"


peaks, counts = stacks("peak"), stacks("allocations")
owners = collections.Counter()
for stack, peak in peaks.items():
    owners[owner(stack.split(";"), peak, counts[stack])] += peak
print(f"peak heap per open stream: {sum(owners.values()) / streams / 1024:.1f} KiB ({streams} streams)")
for name, peak in owners.most_common():
    if peak / streams >= 40:
        print(f"  {peak / streams:6.0f} B  {name}")
