"""Selection rules compared offline on the samples of one ``m30k_mbr.py --dump`` run.

    .venv/bin/python benchmarks/mbr_offline.py --dump DIR --k 1 [--split val] [--n 200]
        [--evidence-k K] [--rule TEXT] [--shared ../shared] [--out FILE]

Sampling dominates an MBR run's cost and does not depend on how a sample is then chosen, so
the rules are compared on one set of kept samples (``trace_<k>.jsonl`` and
``samples_<k>.jsonl``): to tune a rule on the validation set before it is run on the test
set.  Rules (sacreBLEU against the references of --split, first --n sentences):

* ``mbr``: expected sentence BLEU under visit counts (``--mh-select mbr``);
* ``mbr, length prior a``: each sample's weight also multiplied by p(length | source)^a, the
  model's length predictor (so that samples of unlikely lengths count less as evidence);
* ``mbr + l*energy``: expected BLEU plus l times minus the sample's raw energy per position;
* ``mbr + l*local energy``: the same with the locally normalised energy (minus the
  pseudo-log-likelihood) per position;
* ``mbr + 32*(energy + c*log p(L))``: the hybrid score also rewards likely lengths (the
  length predictor's log-probability, c nats per position per nat);
* ``mbr (bleu+chrf) + 32*energy``: the hybrid rule with the mean of sentence BLEU and chrF
  as the utility;
* ``..., mask-predict starts as candidates``: the chains' warm starts (mask-predict's
  hypothesis at each length) may also be chosen; they carry no weight as evidence;
* ``..., setting k as the only evidence`` / ``added to candidates and evidence``
  (``--evidence-k k``): the samples of another chain setting of the same run (MH at
  tau = 1, say) estimate the expected utility, with the first setting's samples as
  candidates of no weight beside them, or both settings' samples are candidates and
  evidence;
* ``best energy``: the lowest raw energy per position (``--mh-select best``);
* ``oracle``: the sample with the highest sentence BLEU against the reference (a bound, not a
  rule).
"""

import argparse
import gzip
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load(dump: Path, k: int, detokenize):
    """({id: list of (text, length, length_rank, raw energy, local energy)} over every
    post-burn-in sample, {id: the same over the warm starts}); texts detokenized as the
    output is, energies per position, samples joined with their epoch records."""
    from fairseq_mh.trace import read_samples, read_trace

    energy = {}
    starts = defaultdict(list)
    for r in read_trace(dump / f"trace_{k}.jsonl"):
        e = (r.length, r.energy_raw / max(1, r.n_free), r.energy_local / max(1, r.n_free))
        if r.record == "epoch":
            energy[(r.id, r.length_rank, r.chain, r.epoch)] = e
        elif r.record == "start":
            starts[r.id].append((detokenize(r.text), e[0], r.length_rank, *e[1:]))
    out = defaultdict(list)
    for s in read_samples(dump / f"samples_{k}.jsonl"):
        length, raw, local = energy[(s.id, s.length_rank, s.chain, s.epoch)]
        out[s.id].append((detokenize(s.tokens), length, s.length_rank, raw, local))
    return out, starts


def length_log_probs(dec, sources):
    """[{length: log p(length | source)}] from the model's length predictor."""
    import torch

    from fairseq_mh.models.adapters import adapter_for

    ad = adapter_for(dec.models[0], dec.task.target_dictionary)
    out = []
    with torch.no_grad():
        for toks in dec.encode(sources):
            net_input = {"src_tokens": toks[None]}
            lp, lengths = ad.length_distribution(ad.encode(net_input), net_input)
            out.append(dict(zip(lengths[0].tolist(), lp[0].tolist())))
    return out


START_WEIGHT = 1e-9  # a warm start's weight as evidence when it is only a candidate


def select(samples, starts, rule, lp, utility, hot=()):
    """The text a rule picks from one sentence's samples: ``core.mbr.mbr_select``, the code
    ``--mh-select mbr`` runs (with ``--mbr-score-weight`` as ``energy``), the length prior
    entering as visit weights.  ``hot``: the samples of a second chain setting
    (``--evidence-k``), which rule ``hot`` adds to the candidates and the evidence ('both')
    or makes the only evidence ('only': the first setting's samples are then candidates
    with no weight)."""
    from fairseq_mh.core.mbr import mbr_select

    local = "local" in rule
    hot = list(hot) if rule.get("hot") else []
    pool = samples + (starts if rule.get("starts") else []) + hot
    texts = [s[0] for s in pool]
    floor = min(lp.values())
    c = rule.get("length_score", 0.0)
    scores = [-s[4 if local else 3] + c * lp.get(s[1], floor) for s in pool]  # minus the energy per position
    if rule["kind"] == "best":
        return texts[int(np.argmax(scores))]
    if rule.get("hot") == "only":
        counts = [START_WEIGHT] * (len(pool) - len(hot)) + [1.0] * len(hot)
    else:
        counts = [float(np.exp(rule.get("prior", 0.0) * lp.get(s[1], floor))) for s in samples]
        counts += [START_WEIGHT] * (len(pool) - len(samples) - len(hot)) + [1.0] * len(hot)
    weight = rule.get("local", rule.get("energy", 0.0))
    return mbr_select(texts, counts, rule.get("utility", utility), scores, weight).best


class MeanUtility:
    """The mean of sentence BLEU and chrF (both 0-100), as a ``PairwiseUtility``."""

    name = "bleu+chrf"

    def __init__(self):
        from fairseq_mh.core.utility import make_utility

        self.parts = (make_utility("bleu"), make_utility("chrf"))

    def matrix(self, strings):
        return sum(u.matrix(strings) for u in self.parts) / len(self.parts)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("FAIRSEQ_MH_SHARED", REPO.parent / "shared")))
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--k", type=int, default=1, help="the chain setting's row in m30k_mbr.py")
    p.add_argument("--split", default="val", choices=["val", "test_2016_flickr"])
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--evidence-k", type=int, default=None,
                   help="a second chain setting's row (e.g. 4, MH at tau=1 from the same starts) "
                        "whose samples serve as evidence")
    p.add_argument("--rule", action="append", default=None, metavar="TEXT",
                   help="only the rules whose names contain TEXT (repeatable; default all)")
    return p.parse_args(argv)


def rule_table(evidence_k=None):
    """name -> the rule's settings for ``select``, in the order the table lists them; the
    rules of a second setting's evidence only when ``evidence_k`` names one."""
    rules = {"best energy": dict(kind="best"), "mbr": dict(kind="mbr")}
    for prior in (0.5, 1.0):
        rules[f"mbr, length prior {prior}"] = dict(kind="mbr", prior=prior)
    for lam in (4.0, 8.0, 16.0, 32.0, 64.0):
        rules[f"mbr + {lam}*energy"] = dict(kind="mbr", energy=lam)
        rules[f"mbr, length prior 0.5, + {lam}*energy"] = dict(kind="mbr", prior=0.5, energy=lam)
        rules[f"mbr + {lam}*local energy"] = dict(kind="mbr", local=lam)
        rules[f"mbr + {lam}*energy, mask-predict starts as candidates"] = dict(kind="mbr", energy=lam, starts=True)
    rules["best local energy"] = dict(kind="best", local=0.0)
    for c in (0.05, 0.1, 0.2):
        rules[f"mbr + 32*(energy + {c}*log p(L))"] = dict(kind="mbr", energy=32.0, length_score=c)
    rules["mbr (bleu+chrf) + 32*energy"] = dict(kind="mbr", energy=32.0, utility=MeanUtility())
    if evidence_k is not None:
        for lam in (0.0, 8.0, 16.0, 32.0, 64.0):
            rules[f"mbr + {lam}*energy, setting {evidence_k} as the only evidence"] = dict(
                kind="mbr", energy=lam, hot="only")
            rules[f"mbr + {lam}*energy, setting {evidence_k} added to candidates and evidence"] = dict(
                kind="mbr", energy=lam, hot="both")
    return rules


def oracle_hypotheses(pool, ref):
    """Each sentence's sample with the highest sentence BLEU against its reference."""
    import sacrebleu

    oracle = []
    for i in range(len(pool)):
        texts = list(dict.fromkeys(s[0] for s in pool[i]))
        oracle.append(max(texts, key=lambda t: sacrebleu.sentence_bleu(t, [ref[i]]).score))
    return oracle


def main(argv=None):
    a = parse_args(argv)
    import sacrebleu

    from fairseq_mh.core.utility import make_utility
    from fairseq_mh.evaluation import load_decoder

    def lines(lang):
        with gzip.open(a.shared / "data" / "multi30k" / f"{a.split}.{lang}.gz", "rt", encoding="utf-8") as f:
            return f.read().splitlines()[: a.n]

    src, ref = lines("de"), lines("en")
    model = a.shared / "models" / "m30k-cmlm-e33"
    dec = load_decoder(model / "checkpoint.pt", model, "translation_mh", "de", "en", model / "spm.model")
    pool, starts = load(a.dump, a.k, dec.detokenize)
    hot = load(a.dump, a.evidence_k, dec.detokenize)[0] if a.evidence_k is not None else {}
    n = len(pool)
    src, ref = src[:n], ref[:n]
    lps = length_log_probs(dec, src)
    bleu = make_utility("bleu")
    rules = rule_table(a.evidence_k)
    if a.rule:
        rules = {k: v for k, v in rules.items() if any(t in k for t in a.rule)}
    lines_out = ["| rule | BLEU |", "|---|---:|"]
    for name, rule in rules.items():
        hyp = [select(pool[i], starts.get(i, []), rule, lps[i], bleu, hot.get(i, ())) for i in range(n)]
        lines_out.append(f"| {name} | {sacrebleu.corpus_bleu(hyp, [ref]).score:.2f} |")
        print(lines_out[-1], flush=True)
    lines_out.append(f"| oracle (a bound) | {sacrebleu.corpus_bleu(oracle_hypotheses(pool, ref), [ref]).score:.2f} |")
    print(lines_out[-1])
    if a.out:
        import shlex

        from fairseq_mh.textio import atomic_write

        cmd = shlex.join(["python", "benchmarks/mbr_offline.py", *(argv if argv is not None else sys.argv[1:])])
        samples = sum(len(v) for v in pool.values())
        atomic_write(a.out, f"Selection rules on the kept samples of {a.dump} (setting {a.k}; {n} sentences of "
                            f"{a.split}, {samples / n:.0f} samples per sentence), sacreBLEU:\n\n"
                            f"Command: `{cmd}`\n\n" + "\n".join(lines_out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
