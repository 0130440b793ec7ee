"""Paired comparisons from fairseq-mh-pairwise's JSON lines: per-pair differences between
methods (mean ± standard error), and incompatibility and AG - MRF by distance between the two
positions.  A reading aid for docs/results/pairwise_m30k.md, not a test.

    .venv/bin/python benchmarks/pairwise_paired.py docs/results/pairwise_m30k_adjacent.jsonl [...]
"""

import json
import math
import statistics as st
import sys


def paired(pairs, f):
    d = [f(r) for r in pairs]
    return f"{st.fmean(d):+.4f} ± {st.stdev(d) / math.sqrt(len(d)):.4f}"


def report(path):
    recs = [json.loads(line) for line in open(path, encoding="utf-8")]
    pairs = [r for r in recs if r["record"] == "pair"]
    methods = list(pairs[0]["methods"])
    print(f"## {path}: {len(pairs)} pairs\n")
    print("| difference (per pair) | NLL pair | NLL unary |\n|---|---:|---:|")
    for other in (m for m in methods if m != "ag"):
        row = [paired(pairs, lambda r, k=k: r["methods"]["ag"][k] - r["methods"][other][k])
               for k in ("nll_pair", "nll_unary")]
        print(f"| ag - {other} | {row[0]} | {row[1]} |")
    for m in methods:
        print(f"| {m} - MLM conditionals | - | {paired(pairs, lambda r: r['methods'][m]['nll_unary'] - r['mlm']['nll_unary'])} |")
    print("\n| distance B - A | pairs | incompatibility (mean) | AG - MRF NLL pair |\n|---|---:|---:|---:|")
    for lo, hi in ((1, 2), (2, 4), (4, 1000)):
        sub = [r for r in pairs if lo <= r["pos_b"] - r["pos_a"] < hi]
        if len(sub) > 1 and "mrf" in methods:
            print(f"| {lo}{'' if hi == lo + 1 else f'-{hi - 1}' if hi < 1000 else '+'} | {len(sub)} | "
                  f"{st.fmean(r['incompatibility'] for r in sub):.3f} | "
                  f"{paired(sub, lambda r: r['methods']['ag']['nll_pair'] - r['methods']['mrf']['nll_pair'])} |")
    print()


if __name__ == "__main__":
    for p in sys.argv[1:]:
        report(p)
