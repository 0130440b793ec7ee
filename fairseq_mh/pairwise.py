"""fairseq-mh-pairwise: explicit two-position joints of a CMLM on a test set's references.

    fairseq-mh-pairwise DATA --path CHECKPOINT [--task translation_mh|translation_self]
        [--pairs adjacent|random] [--num-pairs N] [--seed S] [--topk K|all]
        [--methods mrf mrf-local hcb ag] [--jsonl FILE]
    (also: python -m fairseq_mh.pairwise ...)

Why: Torroba Hennigen & Kim (2023) turn an MLM's conditionals into joints over two positions
(``fairseq_mh.core.pairwise``) and measure them exactly.  For each picked sentence of the
binarized subset, one pair of positions of its reference is scored given the source and the
rest of the reference, against the gold tokens and the MLM's own conditionals (the measures of
``fairseq_mh.core.pair_measures``).  The gold tokens are forced into the top-K grid when
missing (as the authors do), and how often that happens is reported.  One pair per sentence;
sentences are drawn in a seeded random order; positions hold ordinary tokens of the
reference (never BOS/EOS or other specials).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import List, Optional

from .errors import UserError, report

PROG = "fairseq-mh-pairwise"
METHODS = ("mrf", "mrf-local", "hcb", "ag")
MEASURES = ("nll_pair", "nll_unary", "kl_all", "jsd_all", "kl_gold", "jsd_gold")

__all__ = ["main", "cli_main", "pick_pairs", "summarise", "format_table"]


def _positive(value: str, alternative: str = "") -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer{alternative}, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1{alternative}, got {n}")
    return n


def _topk(value: str) -> Optional[int]:
    return None if value == "all" else _positive(value, " or 'all'")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other mistake
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[2].replace("\n", " "))
    p.add_argument("data", help="folder written by fairseq-preprocess (with the model's dict.*.txt)")
    p.add_argument("--path", required=True, help="the checkpoint")
    p.add_argument("--task", default="translation_mh", choices=["translation_mh", "translation_self"],
                   help="translation_mh: fairseq cmlm_transformer; translation_self: original Mask-Predict")
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--source-lang")
    p.add_argument("--target-lang")
    p.add_argument("--pairs", default="adjacent", choices=["adjacent", "random"])
    p.add_argument("--num-pairs", type=_positive, default=100, help="pairs (= sentences, one pair each)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--topk", type=_topk, default=50, help="candidates per position (K), or 'all' allowed tokens")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--ag-iterations", type=_positive, default=20000, help="most AG fixed-point steps")
    p.add_argument("--ag-tol", type=float, default=1e-12,
                   help="AG stops once no q(a, b) moves more (0: all steps; the authors' code: 40 steps)")
    p.add_argument("--batch-pairs", type=_positive, default=8, help="pairs evaluated together")
    p.add_argument("--max-tokens", type=_positive, default=16384, help="token budget of one model call")
    p.add_argument("--jsonl", help="write one JSON line per pair and a final summary line here")
    return p


def pick_pairs(eligible: List[List[int]], mode: str, n: int, seed: int):
    """(sentence index, pos_a, pos_b) for ``n`` sentences in a seeded random order.

    ``eligible[s]``: the positions of sentence s that may be paired (sorted).  ``adjacent``:
    A uniform among positions whose right neighbour is eligible, B = A + 1; ``random``: two
    distinct positions uniformly, A the earlier."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ok = [s for s, pos in enumerate(eligible) if _choices(pos, mode)]
    if not ok:
        raise UserError(f"no sentence has two target tokens to pair ({'adjacent' if mode == 'adjacent' else 'any'} "
                        f"ordinary tokens): pairs need references of at least 2 tokens")
    if n > len(ok):
        raise UserError(f"--num-pairs {n} exceeds the {len(ok)} sentences with a pair ({len(eligible) - len(ok)} "
                        f"shorter than 2 tokens): lower it (one pair per sentence)")
    out = []
    for s in [ok[i] for i in torch.randperm(len(ok), generator=g)[:n].tolist()]:
        c = _choices(eligible[s], mode)
        if mode == "adjacent":
            a = c[int(torch.randint(len(c), (1,), generator=g))]
            out.append((s, a, a + 1))
        else:
            i, j = sorted(torch.randperm(len(c), generator=g)[:2].tolist())
            out.append((s, c[i], c[j]))
    return out


def _choices(pos: List[int], mode: str) -> List[int]:
    if mode == "adjacent":
        have = set(pos)
        return [t for t in pos if t + 1 in have]
    return pos if len(pos) >= 2 else []


def _load(args):
    import torch

    from .evaluation import load_decoder
    from .models.adapters import adapter_for

    dec = load_decoder(args.path, args.data, args.task, args.source_lang, args.target_lang)
    # a task config built outside fairseq's hydra set-up keeps these as unresolved "${dataset.*}"
    dec.task.cfg.dataset_impl, dec.task.cfg.required_seq_len_multiple = None, 1
    dec.task.load_dataset(args.gen_subset)
    model = dec.models[0]
    adapter = adapter_for(model, dec.task.target_dictionary)
    if args.topk is not None and args.topk > int(adapter.allowed().sum()):
        raise UserError(f"--topk {args.topk} exceeds the model's {int(adapter.allowed().sum())} ordinary tokens: "
                        f"lower it or pass --topk all")
    torch.set_grad_enabled(False)
    return dec.task, adapter, dec.task.dataset(args.gen_subset)


def _eligible(adapter, dataset) -> List[List[int]]:
    import torch

    allowed = adapter.allowed()
    out = []
    for i in range(len(dataset)):
        tgt = dataset[i]["target"]
        _, free, _ = adapter.target_rows(torch.tensor([tgt.numel()]))
        ok = free[0] & allowed[tgt.clamp(max=allowed.numel() - 1)]
        out.append(ok.nonzero().squeeze(1).tolist())
    return out


def _evaluate_chunk(args, adapter, dataset, chunk) -> List[dict]:
    import torch

    from .core import RowEvaluator
    from .core.pair_measures import grid_index, score_joint, score_mlm
    from .core.pairwise import derive_joint, pair_conditionals

    items = [dataset[s] for s, _, _ in chunk]
    L = max(it["target"].numel() for it in items)
    tokens = torch.full((len(chunk), L), adapter.pad, dtype=torch.long)
    for r, it in enumerate(items):
        tokens[r, : it["target"].numel()] = it["target"]
    pos_a, pos_b = torch.tensor([a for _, a, _ in chunk]), torch.tensor([b for _, _, b in chunk])
    ar = torch.arange(len(chunk))
    gold_a, gold_b = tokens[ar, pos_a], tokens[ar, pos_b]
    encs = [adapter.encode({"src_tokens": it["source"][None, :]})[0] for it in items]
    ev = RowEvaluator(adapter.conditional(encs), pad=adapter.pad, max_tokens=args.max_tokens)
    pc = pair_conditionals(ev, tokens, ar, pos_a, pos_b, adapter.mask, args.topk, adapter.allowed(), gold_a, gold_b)
    assert ev.rows == int(pc.rows.sum())
    ia, ib = grid_index(pc.cand_a, gold_a), grid_index(pc.cand_b, gold_b)
    ca, cb = pc.grid_conditionals()
    mlm = score_mlm(ca, cb, ia, ib)
    scores = {}
    for m in args.methods:
        kw = {"iterations": args.ag_iterations, "tol": args.ag_tol} if m == "ag" else {}
        scores[m] = score_joint(derive_joint(pc, m, **kw), ca, cb, ia, ib)
    d = adapter.dict
    return [{
        "record": "pair", "id": int(it["id"]), "pos_a": int(pos_a[r]), "pos_b": int(pos_b[r]),
        "gold_a": d[int(gold_a[r])], "gold_b": d[int(gold_b[r])],
        "forced_a": bool(pc.forced_a[r]), "forced_b": bool(pc.forced_b[r]), "k": int(pc.cand_a.size(1)),
        "rows": int(pc.rows[r]), "incompatibility": float(mlm["incompatibility"][r]),
        "mlm": {"nll_unary": float(mlm["nll_unary"][r])},
        "methods": {m: {k: float(v[r]) for k, v in s.items()} for m, s in scores.items()},
    } for r, it in enumerate(items)]


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def _se(xs) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n))."""
    xs = list(xs)
    if len(xs) < 2:
        return float("nan")
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def summarise(records: List[dict], methods, settings: dict) -> dict:
    """Means over pairs (with their standard errors), perplexities exp(mean NLL), and what the run cost."""
    per = {}
    for m in methods:
        s = {k: _mean(r["methods"][m][k] for r in records) for k in MEASURES}
        s["ppl_pair"], s["ppl_unary"] = math.exp(s["nll_pair"]), math.exp(s["nll_unary"])
        s["se"] = {k: _se(r["methods"][m][k] for r in records) for k in MEASURES}
        per[m] = s
    mlm_nll = _mean(r["mlm"]["nll_unary"] for r in records)
    return {
        "record": "summary", **settings, "pairs": len(records), "methods": per,
        "mlm": {"nll_unary": mlm_nll, "ppl_unary": math.exp(mlm_nll)},
        "incompatibility": _mean(r["incompatibility"] for r in records),
        "gold_forced": _mean(float(r["forced_a"] or r["forced_b"]) for r in records),
        "rows": sum(r["rows"] for r in records), "k": records[0]["k"] if records else None,
    }


def format_table(summary: dict) -> str:
    """A Markdown table, one row per method and one for the MLM's own conditionals."""
    head = "| method | NLL pair | PPL pair | NLL unary | PPL unary | KL(MLM‖q) | JSD | KL gold | JSD gold |"
    lines = [head, "|---|" + "---:|" * 8]
    for m, s in summary["methods"].items():
        lines.append(f"| {m} | {s['nll_pair']:.3f} | {s['ppl_pair']:.2f} | {s['nll_unary']:.3f} | "
                     f"{s['ppl_unary']:.2f} | {s['kl_all']:.4f} | {s['jsd_all']:.4f} | {s['kl_gold']:.4f} | "
                     f"{s['jsd_gold']:.4f} |")
    mlm = summary["mlm"]
    lines.append(f"| MLM conditionals | - | - | {mlm['nll_unary']:.3f} | {mlm['ppl_unary']:.2f} | 0 | 0 | 0 | 0 |")
    k = f"{summary['k']}" + (" (all ordinary tokens)" if summary["topk"] is None else "")
    lines.append("")
    lines.append(f"{summary['pairs']} {summary['pair_mode']} pairs (seed {summary['seed']}), K = {k}; "
                 f"incompatibility of the MLM's conditionals (mean) {summary['incompatibility']:.4f}; "
                 f"gold forced into the grid in {100 * summary['gold_forced']:.1f}% of pairs; "
                 f"{summary['rows']} model rows; {summary['seconds']:.1f} s")
    return "\n".join(lines)


def run(args) -> dict:
    if not (args.ag_tol >= 0):
        raise UserError(f"--ag-tol must be >= 0, got {args.ag_tol}")
    t0 = time.time()
    _, adapter, dataset = _load(args)
    pairs = pick_pairs(_eligible(adapter, dataset), args.pairs, args.num_pairs, args.seed)
    out = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    records = []
    try:
        for start in range(0, len(pairs), args.batch_pairs):
            recs = _evaluate_chunk(args, adapter, dataset, pairs[start:start + args.batch_pairs])
            records += recs
            if out:
                out.write("".join(json.dumps(r) + "\n" for r in recs))
        settings = {"pair_mode": args.pairs, "seed": args.seed, "topk": args.topk, "task": args.task,
                    "subset": args.gen_subset, "ag_iterations": args.ag_iterations, "ag_tol": args.ag_tol}
        summary = summarise(records, args.methods, settings)
        summary["seconds"] = time.time() - t0
        if out:
            out.write(json.dumps(summary) + "\n")
    finally:
        if out:
            out.close()
    return summary


def main(argv=None) -> int:
    import fairseq_mh  # noqa: F401  (registers the plug-in: tasks, safe checkpoint loading)
    from .core.config import ConfigError

    try:
        args = build_parser().parse_args(argv)
        if args.jsonl:
            try:
                open(args.jsonl, "w").close()  # fail now, not after the run
            except OSError as e:
                raise UserError(f"cannot write --jsonl {args.jsonl}: {e.strerror}") from None
        print(format_table(run(args)))
    except (UserError, ConfigError) as e:
        report(e, prog=PROG)
        return 1
    return 0


def cli_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli_main()
