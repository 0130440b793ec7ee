"""MH decoding in bfloat16 against float32 on the Multi30k CMLM: BLEU and mean energies.

    .venv/bin/python benchmarks/bf16_m30k.py [--shared ../shared] [--n 100] [--epochs 2]
        [--chains 1] [--out docs/results/bf16_m30k.md]

Decodes the first --n sentences of test_2016_flickr (de->en) with ../shared/models/m30k-cmlm-e33,
MH on the raw energy, one length, shared model calls, once with the model in float32 and once
in bfloat16 (energies, proposals and acceptance in float64 from the upcast logits either way),
and writes BLEU (sacreBLEU, detokenized), the mean energies of the outputs (each run's own
model) and their relative change.  A benchmark, not a test.
"""

import argparse
import copy
import gzip
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def report(a, runs, torch_version, cmd, native_bf16=True) -> str:
    """The Markdown page: both runs and their differences."""
    f, b = runs["float32"], runs["bfloat16"]
    same = sum(x == y for x, y in zip(f.hypotheses, b.hypotheses))
    rel = lambda x, y: 100 * (y - x) / abs(x)  # noqa: E731
    return (f"# MH in bfloat16 against float32 (Multi30k CMLM)\n\nFirst {a.n} sentences of test_2016_flickr "
            f"(de->en), ../shared/models/m30k-cmlm-e33, MH raw energy, {a.epochs} epochs, {a.chains} chain(s), one "
            f"length, --mh-batching shared, {a.threads} CPU threads, torch {torch_version}.\n\nCommand: `{cmd}`\n\n"
            "| dtype | BLEU | mean E_raw | mean E_local | model rows | seconds |\n|---|---:|---:|---:|---:|---:|\n"
            + "".join(f"| {r.name} | {r.bleu:.2f} | {r.energy_raw:.3f} | {r.energy_local:.3f} | {r.rows} | "
                      f"{r.seconds:.0f} |\n" for r in (f, b))
            + f"\nbf16 - fp32: BLEU {b.bleu - f.bleu:+.2f}, mean E_raw {rel(f.energy_raw, b.energy_raw):+.2f}%, "
              f"mean E_local {rel(f.energy_local, b.energy_local):+.2f}%; {same}/{a.n} identical hypotheses.  "
              "Each run's energies are its own model's (bf16 logits upcast to float64).\n"
            + ("" if native_bf16 else "\nThis CPU has no oneDNN bf16 kernels (`cpu_runtime.native_half`): the bf16 "
               "run's seconds are torch's fallback matmuls, not what --bf16 costs where it is supported "
               "(BLEU and energies do not depend on it).\n"))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    for name, default in (("--n", 100), ("--epochs", 2), ("--chains", 1), ("--threads", 2)):
        p.add_argument(name, type=int, default=default)
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "bf16_m30k.md"))
    return p.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    model, data = Path(a.shared) / "models" / "m30k-cmlm-e33", Path(a.shared) / "data" / "multi30k"
    missing = [str(f) for f in (model / "checkpoint.pt", data / "test_2016_flickr.de.gz") if not f.is_file()]
    if missing:
        sys.exit(f"bf16_m30k.py: error: {' and '.join(missing)} missing: pass --shared")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.evaluation import Decoder, load_decoder

    torch.set_num_threads(a.threads)
    src = gzip.open(data / "test_2016_flickr.de.gz", "rt", encoding="utf-8").read().splitlines()[: a.n]
    ref = gzip.open(data / "test_2016_flickr.en.gz", "rt", encoding="utf-8").read().splitlines()[: a.n]
    dec = load_decoder(model / "checkpoint.pt", model, "translation_mh", "de", "en", model / "spm.model")
    cfg = SamplerConfig(sampler="mh", energy="raw", mh_epochs=a.epochs, num_chains=a.chains, seed=1)
    runs = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        d = Decoder(dec.task, [copy.deepcopy(dec.models[0]).to(dtype)], dec.spm)
        runs[name] = d.run(name, cfg, src, ref, batch_size=25, batching="shared")
        r = runs[name]
        print(f"{name}: BLEU {r.bleu:.2f}, E_raw {r.energy_raw:.3f}, E_local {r.energy_local:.3f}, {r.seconds:.0f} s",
              flush=True)
    cmd = shlex.join(["python", "benchmarks/bf16_m30k.py", *(argv if argv is not None else sys.argv[1:])])
    from fairseq_mh.cpu_runtime import native_half

    text = report(a, runs, torch.__version__, cmd, native_half(torch.bfloat16))
    from fairseq_mh.textio import atomic_write

    print(text)
    atomic_write(Path(a.out), text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
