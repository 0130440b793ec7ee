"""Memory held by oneDNN's primitive cache, per cached primitive, on this CPU.

Each capacity runs in a fresh process (oneDNN reads the capacity once): it makes bf16
``linear`` calls of ``--shapes`` distinct row counts at a model-like width and reads the
resident set size as it goes.  Growth per primitive is the RSS gained while the cache fills,
divided by the primitives cached.  Every capacity runs twice: under glibc's default malloc,
and with ``MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=65536`` (freed memory returned to
the system), which separates what the cache holds from what the allocator keeps.  This is the
measurement behind ``fairseq_mh.cpu_runtime.PRIMITIVE_CACHE_CAPACITY``.

    python benchmarks/onednn_cache_memory.py --out docs/results/onednn_cache_memory
"""

import argparse
import json
import os
import platform
import subprocess
import sys

CHILD = r"""
import json, sys, torch
shapes, width, every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
w = torch.randn(width, width, dtype=torch.bfloat16)
torch.nn.functional.linear(torch.ones(1, width, dtype=torch.bfloat16), w)
x = torch.ones(shapes, width, dtype=torch.bfloat16)
trace = [(0, rss_mb())]
for m in range(1, shapes + 1):
    torch.nn.functional.linear(x[:m], w)
    if m % every == 0:
        trace.append((m, rss_mb()))
print(json.dumps(trace))
"""


MALLOC = {"default": {},
          "trimmed": {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536"}}


def measure(capacity, shapes, width, every, malloc):
    env = {k: v for k, v in os.environ.items()
           if "PRIMITIVE_CACHE_CAPACITY" not in k and not k.startswith("MALLOC_")}
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(capacity)
    env.update(MALLOC[malloc])
    out = subprocess.run([sys.executable, "-c", CHILD, str(shapes), str(width), str(every)],
                         env=env, capture_output=True, text=True, check=True)
    trace = json.loads(out.stdout)
    start = trace[0][1]
    # the first reading once the cache holds min(capacity, shapes) primitives
    filled = min(m for m, _ in trace if m >= min(capacity, shapes))
    at_fill = dict(trace)[filled]
    return dict(malloc=malloc, capacity=capacity, shapes=shapes, rss_start_mb=round(start, 1),
                rss_end_mb=round(trace[-1][1], 1),
                mb_per_primitive=(round((at_fill - start) / min(filled, capacity), 3)
                                  if capacity >= every else None),
                growth_after_full_mb=round(trace[-1][1] - at_fill, 1) if capacity < shapes else None)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--capacities", default="1,1024,4096")
    p.add_argument("--shapes", type=int, default=4096, help="distinct row counts, 1..N")
    p.add_argument("--width", type=int, default=512, help="in and out features (the model's d)")
    p.add_argument("--every", type=int, default=512, help="read the RSS every this many calls")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    a = p.parse_args()
    rows = [measure(int(c), a.shapes, a.width, a.every, m)
            for m in MALLOC for c in a.capacities.split(",")]
    cmd = "python benchmarks/onednn_cache_memory.py " + " ".join(sys.argv[1:])
    md = [f"# oneDNN primitive cache: memory per cached primitive ({platform.processor() or platform.machine()})",
          "", f"Command: `{cmd}`", "",
          f"bf16 `linear` at width {a.width}, row counts 1..{a.shapes}, one fresh process per capacity.", "",
          "| malloc | capacity | RSS at start (MB) | RSS at end (MB) | MB per cached primitive | growth once full (MB) |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['malloc']} | {r['capacity']} | {r['rss_start_mb']} | {r['rss_end_mb']} | {'-' if r['mb_per_primitive'] is None else r['mb_per_primitive']} | "
           f"{'-' if r['growth_after_full_mb'] is None else r['growth_after_full_mb']} |" for r in rows]
    print("\n".join(md))
    if a.out:
        with open(a.out + ".json", "w") as f:
            json.dump(dict(command=cmd, rows=rows), f, indent=1)
        with open(a.out + ".md", "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
