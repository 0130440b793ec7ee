"""From fairseq-mh-generate's output and ``--mh-trace`` records to the paper's numbers.

How the numbers are formed (see README.md, "What the columns mean"):

* A chain's sample for a sentence at an epoch: with several length candidates, each runs its
  own chains; per (sentence, chain, epoch) the candidate with the lowest target energy per
  free position is the sample (``--hypothesis-score mean-energy``, as the generator ranks its
  outputs; total energy under ``energy``).  With ``length_beam: 1`` there is nothing to pick.
* E_norm of an epoch and chain = the sum over sentences of E_local of those samples, the
  corpus total in nats; the table's "E_norm x 1e-3" is that total / 1000 averaged over
  chains and post-burn-in epochs (the paper's Tables 1-3 report corpus totals in thousands:
  12.87 = 12,870 nats over its De-En (20) sentences; appendix G's std of 0.38 x 10^3
  confirms the scale).  E_norm/sent divides the total by the number of sentences, which
  compares across subsets.  "best" is the lowest per-epoch value (Table 4).
* Acceptance and novel-transition rates: accepted (resp. accepted and different) proposals
  over all proposals of the post-burn-in epochs of every chain (all length candidates).
* Mask-predict (and the warm start) make no chain: their E_norm is that of the output
  hypothesis (the length candidate of the printed hypothesis), acceptance and novel are empty.
* Model rows: decoder rows (one masked target sequence each) the trace counts over all
  epochs, burn-in included, energy-reporting rows included (report_rows, counted separately);
  rows of the warm start and of each start's first energies are not in the trace.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from ..textio import atomic_file, atomic_write, moses_detokenizer, sacrebleu_score
from ..trace import SampleRecord, TraceRecord, by_epoch, proposal_rates
from .spec import ExperimentError, Run, kind_of

__all__ = [
    "parse_generate",
    "summarize_trace",
    "bleu",
    "bleu_from_dump",
    "table_row",
    "write_tables",
    "write_plots",
    "COLUMNS",
]

_LINE = re.compile(r"^([DP])-(\d+)\t(.*)$")
_TIME = re.compile(r"Translated ([\d,]+) sentences .* in ([\d.]+)s")


def parse_generate(stdout: str, stderr: str = "") -> dict:
    """{'D': {id: detokenised text}, 'P_len': {id: number of positional scores}, 'decode_s'}
    (first hypothesis of each sentence; fairseq logs its timing to either stream)."""
    D, P = {}, {}
    decode_s = None
    for line in (stdout + "\n" + stderr).splitlines():
        m = _LINE.match(line)
        if m:
            kind, sid, rest = m.group(1), int(m.group(2)), m.group(3)
            if kind == "D" and sid not in D:
                parts = rest.split("\t", 1)
                D[sid] = parts[1] if len(parts) > 1 else ""
            elif kind == "P" and sid not in P:
                P[sid] = len(rest.split())
            continue
        t = _TIME.search(line)
        if t:
            decode_s = float(t.group(2))
    return {"D": D, "P_len": P, "decode_s": decode_s}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def pick_samples(records: List[TraceRecord], target: str, n_fixed: int,
                 score: str = "mean-energy") -> Dict[tuple, TraceRecord]:
    """(epoch, chain, id) -> the record of the length candidate that is the sample."""

    def key(r):
        e = r.energy_raw if target == "raw" else r.energy_local
        if score == "mean-energy":
            e = e / max(1, r.length - n_fixed)
        return (e, r.length_rank)

    best: Dict[tuple, TraceRecord] = {}
    for r in records:
        k = (r.epoch, r.chain, r.id)
        if k not in best or key(r) < key(best[k]):
            best[k] = r
    return best


def _refinement_summary(records: List[TraceRecord], n_fixed: int, out_lengths: Dict[int, int]) -> dict:
    """Energies of the printed outputs of a refinement decoder (one record per candidate)."""
    chosen = {}
    for r in sorted(records, key=lambda r: r.length_rank):
        want = out_lengths.get(r.id)
        if want is not None and r.length == want and r.id not in chosen:
            chosen[r.id] = r
    for i, r in pick_samples(records, "local", n_fixed).items():
        chosen.setdefault(i[2], r)  # fallback: no printed length to match
    e_norm = sum(r.energy_local for r in chosen.values())
    e_raw = sum(r.energy_raw for r in chosen.values())
    return dict(E_norm=e_norm, E_norm_best=e_norm, E_raw=e_raw, acceptance=None, novel=None, curve={})


def _chain_curve(post: List[TraceRecord], picked: Dict[tuple, TraceRecord], burn_in: int) -> dict:
    """Post-burn-in epoch -> mean over chains of the sample's energies, and the rates."""
    e_norm = defaultdict(dict)  # epoch -> chain -> total
    e_raw = defaultdict(dict)
    for (ep, ch, _), r in picked.items():
        e_norm[ep][ch] = e_norm[ep].get(ch, 0.0) + r.energy_local
        e_raw[ep][ch] = e_raw[ep].get(ch, 0.0) + r.energy_raw
    epochs = by_epoch(post)
    curve = {}
    for ep in sorted(e_norm):
        _, acc, nov = proposal_rates(epochs[ep])
        curve[ep - burn_in] = {
            "epoch": ep,
            "E_norm": _mean(e_norm[ep].values()),
            "E_raw": _mean(e_raw[ep].values()),
            "acceptance": acc,
            "novel": nov,
            "target_temperature": epochs[ep][0].target_temperature,
        }
    return curve


def summarize_trace(records: List[TraceRecord], run: Run, n_fixed: int, ids: List[int],
                    out_lengths: Dict[int, int]) -> dict:
    """The run's energy, acceptance, novel and row numbers, and its per-epoch curves."""
    if not records:
        raise ExperimentError(f"run '{run.name}': the --mh-trace file is empty")
    seen = {r.id for r in records}
    missing = [i for i in ids if i not in seen]
    if missing:
        raise ExperimentError(f"run '{run.name}': the trace has no record of sentence(s) {missing[:5]}")
    rows = sum(r.rows for r in records)
    report_rows = sum(r.report_rows for r in records)
    out = {"sentences": len(ids), "rows": rows, "report_rows": report_rows, "model_rows": rows - report_rows}
    if not run.is_chain:
        out.update(_refinement_summary(records, n_fixed, out_lengths))
        return out
    target = run.options.get("energy", "raw")
    score = run.options.get("hypothesis_score", "mean-energy")
    post = [r for r in records if not r.burn_in]
    burn_in = min((r.epoch for r in post), default=0)
    curve = _chain_curve(post, pick_samples(post, target, n_fixed, score), burn_in)
    _, acceptance, novel = proposal_rates(post)
    out.update(
        E_norm=_mean(c["E_norm"] for c in curve.values()),
        E_norm_best=min(c["E_norm"] for c in curve.values()),
        E_raw=_mean(c["E_raw"] for c in curve.values()),
        acceptance=acceptance,
        novel=novel,
        curve=curve,
        burn_in=burn_in,
    )
    return out


def bleu(hyps: List[str], refs: List[str]) -> float:
    """sacreBLEU (its defaults) of detokenized hypotheses against the raw references."""
    return float(sacrebleu_score(hyps, refs)[0].score)


def detokenizer(model_cfg, tgt_lang: str):
    """Token string of the target dictionary -> text as fairseq-generate's D- line has it."""
    from fairseq.data.data_utils import post_process

    detok = moses_detokenizer(tgt_lang) if model_cfg.tokenizer == "moses" else None

    def fn(s: str) -> str:
        s = post_process(s, model_cfg.bpe) if model_cfg.bpe else s
        return detok(s) if detok is not None else s

    return fn


def bleu_from_dump(dump_records: List[SampleRecord], trace_records: List[TraceRecord], run: Run, n_fixed: int,
                   ids: List[int], refs: List[str], detok) -> Dict[int, dict]:
    """Post-burn-in epoch -> {'bleu': mean over chains, 'chains': n} from --mh-dump-samples."""
    target = run.options.get("energy", "raw")
    score = run.options.get("hypothesis_score", "mean-energy")
    post = [r for r in trace_records if not r.burn_in]
    burn_in = min(r.epoch for r in post)
    picked = pick_samples(post, target, n_fixed, score)
    text = {(d.epoch, d.chain, d.id, d.length_rank): d.tokens for d in dump_records}
    texts = defaultdict(dict)
    for (ep, ch, sid), r in picked.items():
        k = (ep, ch, sid, r.length_rank)
        if k not in text:
            raise ExperimentError(f"run '{run.name}': the sample dump lacks sentence {sid}, chain {ch}, epoch {ep}")
        texts[ep].setdefault(ch, {})[sid] = detok(text[k])
    out = {}
    for ep, chains in sorted(texts.items()):
        scores = [bleu([c[i] for i in ids], refs) for c in chains.values()]
        out[ep - burn_in] = {"bleu": sum(scores) / len(scores), "chains": len(scores)}
    return out


# ---------------------------------------------------------------------------------------------
COLUMNS = [
    ("run", "run", None),
    ("label", "setting", None),
    ("sampler", "sampler", None),
    ("energy", "target", None),
    ("E_norm_x1e-3", "E_norm ×1e-3 ↓", 2),
    ("E_norm_best_x1e-3", "best E_norm ×1e-3", 2),
    ("E_norm_per_sentence", "E_norm / sent.", 2),
    ("E_raw_x1e-3", "E_raw ×1e-3", 2),
    ("novel", "novel", 3),
    ("acceptance", "accept", 3),
    ("BLEU", "BLEU (output)", 2),
    ("BLEU_epoch_avg", "BLEU (epoch avg)", 2),
    ("BLEU_epoch_best", "BLEU (epoch best)", 2),
    ("BLEU_curve_chains", "curve chains", None),
    ("sentences", "sent.", None),
    ("mh_epochs", "epochs", None),
    ("burn_in", "burn-in", None),
    ("num_chains", "chains", None),
    ("length_beam", "lengths", None),
    ("wall_s", "time (s)", 1),
    ("decode_s", "decode (s)", 1),
    ("model_rows", "model rows", None),
    ("report_rows", "report rows", None),
    ("rows_per_s", "rows/s", 0),
]


def table_row(r: dict) -> dict:
    o = r["options"]
    n = r["sentences"]
    row = {
        "run": r["run"], "label": r["label"], **r["grid"], "sampler": o.get("sampler"),
        "energy": o.get("energy") if kind_of(o).exact else None,
        "E_norm_x1e-3": r["E_norm"] / 1000, "E_norm_best_x1e-3": r["E_norm_best"] / 1000,
        "E_norm_per_sentence": r["E_norm"] / n, "E_raw_x1e-3": r["E_raw"] / 1000,
        "novel": r["novel"], "acceptance": r["acceptance"], "BLEU": r["BLEU"],
        "BLEU_epoch_avg": r.get("BLEU_epoch_avg"), "BLEU_epoch_best": r.get("BLEU_epoch_best"),
        "BLEU_curve_chains": r.get("BLEU_curve_chains"), "sentences": n,
        "wall_s": r["wall_s"], "decode_s": r["decode_s"], "model_rows": r["model_rows"], "report_rows": r["report_rows"],
        "rows_per_s": r["rows"] / r["decode_s"] if r.get("decode_s") else None,
    }
    if not kind_of(o).is_chain:
        row.update(mh_epochs=None, burn_in=None, num_chains=None, length_beam=o.get("length_beam"))
    else:
        row.update({k: o.get(k) for k in ("mh_epochs", "burn_in", "num_chains", "length_beam")})
    return row


def table_columns(grid_keys: List[str]):
    cols = list(COLUMNS)
    return cols[:2] + [(k, k, None) for k in grid_keys] + cols[2:]


def _cell(v, digits):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if digits is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.{digits}f}"
    return str(v)


def write_tables(folder: Path, name: str, rows: List[dict], grid_keys: List[str], header: str) -> None:
    cols = table_columns(grid_keys)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c[0] for c in cols])
    for r in rows:
        w.writerow(["" if r.get(c[0]) is None else r.get(c[0]) for c in cols])
    atomic_write(folder / f"{name}.csv", buf.getvalue())
    md = [header, "", "| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(_cell(r.get(c[0]), c[2]) for c in cols) + " |")
    md += ["", _NOTES]
    atomic_write(folder / f"{name}.md", "\n".join(md) + "\n")


_NOTES = """Columns: **E_norm ×1e-3** = locally normalised energy (minus pseudo-log-likelihood, nats)
of each chain's sample, summed over the sentences (corpus total, as the paper's tables), /1000,
averaged over chains and post-burn-in epochs; **best** = lowest per-epoch value; **E_norm / sent.**
= the same total per sentence (comparable across subsets). **novel** = accepted proposals that
changed the state / proposals; **accept** = accepted / proposals (post-burn-in, all chains);
both empty for mask-predict. **BLEU (output)** = sacreBLEU of the printed hypotheses (per
sentence, the best chain's selected state: `mh_select`) against the raw references; **BLEU
(epoch avg / best)** = mean / max over the curve's epochs of the per-epoch BLEU of the chains'
samples (`curve chains` chains: 1 from reruns, all from sample dumps). **model rows** = decoder
rows of the sampler (energy-reporting rows apart); **time** = wall-clock of fairseq-mh-generate
(model loading included), **decode** = its own translation time."""


def write_plots(folder: Path, results: List[dict], title: str) -> List[Path]:
    """energy.png, bleu.png, acceptance.png: per post-burn-in epoch, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for fname, draw in (("energy.png", _energy_plot), ("bleu.png", _bleu_plot), ("acceptance.png", _acceptance_plot)):
        fig = draw(plt, results, title)
        paths.append(_save_png(plt, fig, folder / fname))
    return paths


def _save_png(plt, fig, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_file(path, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def _energy_plot(plt, results: List[dict], title: str):
    """-E_norm (Figure 1 left) and -E_raw (appendix Figure 3)."""
    chain_runs = [r for r in results if r["curve"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, name in (("E_norm", axes[0], "-E_norm"), ("E_raw", axes[1], "-E_raw")):
        for r in chain_runs:
            xs = sorted(r["curve"], key=int)
            ax.plot([int(x) for x in xs], [-r["curve"][x][key] / 1000 for x in xs], marker=".", label=r["run"])
        for r in results:
            if not r["curve"] and r.get(key) is not None:
                ax.axhline(-r[key] / 1000, linestyle="--", linewidth=1, color="gray")
                ax.annotate(r["run"], (0, -r[key] / 1000), fontsize=7, color="gray")
        ax.set_xlabel("epoch (post burn-in)")
        ax.set_ylabel(f"{name} ×1e-3 (corpus total)")
        ax.set_title(f"{title}: {name}")
        if chain_runs:
            ax.legend(fontsize=7)
    return fig


def _bleu_plot(plt, results: List[dict], title: str):
    fig, ax = plt.subplots(figsize=(6, 4))
    drew = False
    for r in results:
        bc = r.get("bleu_curve") or {}
        if bc:
            xs = sorted(bc, key=int)
            ax.plot([int(x) for x in xs], [bc[x]["bleu"] for x in xs], marker="o", label=r["run"])
            drew = True
        elif r.get("BLEU") is not None:
            ax.axhline(r["BLEU"], linestyle="--", linewidth=1, color="gray")
            ax.annotate(f"{r['run']} (output)", (0, r["BLEU"]), fontsize=7, color="gray")
    if not drew:
        ax.text(0.5, 0.5, "no per-epoch BLEU (curves.bleu=off)", transform=ax.transAxes, ha="center")
    ax.set_xlabel("epoch (post burn-in)")
    ax.set_ylabel("BLEU")
    ax.set_title(f"{title}: BLEU")
    if drew:
        ax.legend(fontsize=7)
    return fig


def _acceptance_plot(plt, results: List[dict], title: str):
    chain_runs = [r for r in results if r["curve"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax in (("acceptance", axes[0]), ("novel", axes[1])):
        for r in chain_runs:
            xs = [x for x in sorted(r["curve"], key=int) if r["curve"][x][key] is not None]
            ax.plot([int(x) for x in xs], [r["curve"][x][key] for x in xs], marker=".", label=r["run"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch (post burn-in)")
        ax.set_ylabel(key)
        ax.set_title(f"{title}: {key}")
        if chain_runs:
            ax.legend(fontsize=7)
    return fig


def write_curves_csv(folder: Path, results: List[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "label", "epoch_post_burn_in", "epoch", "E_norm", "E_raw", "acceptance", "novel",
                "target_temperature", "BLEU", "BLEU_chains"])
    for r in results:
        bc = r.get("bleu_curve") or {}
        for x in sorted(r["curve"], key=int):
            c = r["curve"][x]
            b = bc.get(x) or {}
            w.writerow([r["run"], r["label"], x, c["epoch"], c["E_norm"], c["E_raw"], _n(c["acceptance"]),
                        _n(c["novel"]), c["target_temperature"], _n(b.get("bleu")), _n(b.get("chains"))])
    atomic_write(folder / "curves.csv", buf.getvalue())


def _n(v):
    return "" if v is None else v
