#!/usr/bin/env python3
"""Where a function's time goes, from `perf script` output: what it calls, by share of all samples.

    perf record -F 20000 -g -p PID -o perf.data      # while a load runs
    perf script -i perf.data -F comm,ip,sym --no-demangle > perf.txt
    perf-callees.py perf.txt 'ServerC9guardHead' [--callers] [--top 25]

For every sample whose stack holds a frame containing the given text (a mangled Swift name or
a part of one), the innermost such frame is found and the frame it called is counted (`<self>`
when the sample is in the function itself). With --callers, the samples whose leaf frame matches
are counted by the frame that called it instead. Shares are of all samples, so a function's
line reads as its inclusive share of the process's time.
"""
import argparse, collections

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("script", help="perf script output (-F comm,ip,sym)")
parser.add_argument("function", help="text a frame's symbol contains")
parser.add_argument("--callers", action="store_true", help="count the callers of leaf frames matching instead")
parser.add_argument("--top", type=int, default=25)
args = parser.parse_args()

stacks, current = [], []
for line in open(args.script, errors="replace"):
    line = line.rstrip()
    if not line:
        if current:
            stacks.append(current)
        current = []
    elif line[0] in " \t":
        parts = line.split(None, 1)
        current.append(parts[1] if len(parts) > 1 else parts[0])  # leaf first
    else:
        current = []
if current:
    stacks.append(current)

counts, hits = collections.Counter(), 0
for stack in stacks:
    if args.callers:
        if stack and args.function in stack[0]:
            hits += 1
            counts[stack[1] if len(stack) > 1 else "<root>"] += 1
        continue
    matches = [i for i, frame in enumerate(stack) if args.function in frame]
    if matches:
        hits += 1
        inner = matches[0]
        counts[stack[inner - 1] if inner > 0 else "<self>"] += 1
total = max(len(stacks), 1)
print(f"{len(stacks)} samples; {args.function}: {hits} ({100 * hits / total:.2f}%)")
for frame, count in counts.most_common(args.top):
    print(f"{100 * count / total:6.2f}%  {frame[:170]}")
