#!/usr/bin/env python3
"""Evaluate a Mask-Predict (or fairseq CMLM) checkpoint on a WMT test set with the MH plug-in.

The four ``scripts/eval_wmt1*_*.sh`` wrappers call this with ``--pair``; everything after
``--`` goes to ``fairseq-mh-generate`` unchanged (``--sampler mh --mh-epochs 4 ...``).

Steps, each written atomically (temporary name in the same folder, then rename) and skipped
on a re-run when its output exists and was made from the same inputs:

1. ``OUT/prep``: raw source and reference -> (Romanian only: wmt16-scripts
   normalise-romanian + remove-diacritics) -> Moses tokenization (sacremoses, escaping on,
   as tokenizer.perl's default) -> subword-nmt BPE when ``--bpe-codes`` is given.
2. ``OUT/bin``: ``fairseq-mh-preprocess`` with the model's own ``dict.*.txt``.
3. ``OUT/shards/shard-I-of-K.txt``: ``fairseq-mh-generate`` output for one shard.  Shards
   are balanced by expected cost (``fairseq_mh.sharding``: length^2 x epochs x chains for chain
   samplers, length x iterations for mask-predict), not by count: shard I decodes the ids in
   ``OUT/shards/ids-I-of-K.txt`` (``--mh-sentences``), under their ids in the full test set,
   so its hypotheses are the unsharded run's.  ``--launcher submitit`` runs every shard as a
   job (one Slurm array where Slurm is available, submitit's local executor otherwise, see
   ``fairseq_mh.cluster``), waits, resubmits none that finished, then merges.
4. merge + score (``--merge``, or at once when K = 1): hypotheses in the original order,
   checked complete and unique; BPE removed (by fairseq's ``--remove-bpe``), Moses
   detokenized; sacreBLEU on detokenized text vs the raw references, and tokenized BLEU as
   Mask-Predict reports it (whitespace tokens of the Moses-tokenized, BPE-removed hypothesis
   vs the Moses-tokenized reference, case-sensitive, no smoothing: multi-bleu.perl semantics).

Every mistake in the input stops the script before anything is written, with one line on
stderr and exit status 2 (``fairseq_mh.errors``, as every command of the project); a failing
fairseq tool is reported the same way (its error line, and its log under OUT/logs) and leaves
no partial output of its step.  Reading, writing, tool lookup, preprocessing and BLEU are the
package's (``fairseq_mh.textio``), shared with the experiment runner.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

PROG = "wmt_eval"
FORMAT_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
if (REPO / "fairseq_mh").is_dir() and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the package of this checkout, as the script

from fairseq_mh.errors import UserError, exit_on_user_error  # noqa: E402
from fairseq_mh.sharding import balanced_shards, sampler_settings, shard_costs  # noqa: E402
from fairseq_mh.textio import (  # noqa: E402
    MosesSettings,
    Preprocessor,
    atomic_file,
    atomic_folder,
    atomic_write,
    find_tool,
    moses_detokenizer,
    read_lines,
    require_module,
    run_tool,
    sacrebleu_score,
    sha256,
    tokenized_bleu,
    write_lines,
)

# The test sets of the released Mask-Predict models, relative to the shared data folder.
DEFAULT_TESTSETS = {
    "de-en": ("wmt14_deen/newstest2014.de", "wmt14_deen/newstest2014.en"),
    "en-de": ("wmt14_deen/newstest2014.en", "wmt14_deen/newstest2014.de"),
    "ro-en": ("wmt16_roen/newstest2016-enro.ro.gz", "wmt16_roen/newstest2016-enro.en.gz"),
    "en-ro": ("wmt16_roen/newstest2016-enro.en.gz", "wmt16_roen/newstest2016-enro.ro.gz"),
}

# Options the script sets itself; giving them after `--` would contradict it.
RESERVED = {
    "--task": "--task", "--path": "--model/--checkpoint", "--seed": "--seed", "--batch-size": "--batch-size",
    "--max-sentences": "--batch-size", "--gen-subset": None, "--cpu": "--cpu", "--remove-bpe": "--bpe-codes",
    "--post-process": "--bpe-codes", "--source-lang": "--pair", "--target-lang": "--pair", "-s": "--pair",
    "-t": "--pair", "--num-shards": "--num-shards", "--shard-id": "--shard-id",
    "--distributed-world-size": "--num-shards", "--distributed-rank": "--shard-id", "--results-path": "--out",
    "--nbest": None, "--mh-sentences": "--num-shards",
}
# Options of --launcher submitit (a job per shard), with what they mean to the parser.
CLUSTER_OPTIONS = ("partition", "gpus_per_shard", "time_limit", "array_parallelism", "job_logs")

H_LINE = re.compile(r"^H-(\d+)\t([^\t]*)\t?(.*)$")
HEADER = "#wmt_eval "


def log(msg: str) -> None:
    print(f"[{PROG}] {msg}", file=sys.stderr, flush=True)


def make_preprocessor(lang: str, bpe_codes: Optional[Path] = None, normalize_punctuation: bool = False) -> Preprocessor:
    """Raw line -> the text the released models were trained on.  No dash splits: their WMT14
    data is Google's wmt16_en_de recipe (tokenizer.perl without -a), see fairseq_mh/textio/moses.py;
    Romanian is normalised as Lee et al. 2018's data."""
    moses = MosesSettings(aggressive_dash_splits=False, normalize_punctuation=normalize_punctuation)
    return Preprocessor(lang, moses=moses, romanian=(lang == "ro"),
                        subword="subword_nmt" if bpe_codes else None, subword_model=bpe_codes)


# --- files -------------------------------------------------------------------------------------

def load_done(folder: Path) -> Optional[dict]:
    f = folder / "done.json"
    if not folder.exists():
        return None
    if not f.is_file():
        raise UserError(f"'{folder}' exists but is incomplete (no done.json): delete it and run again")
    return json.loads(f.read_text(encoding="utf-8"))


def done_before(final: Path, step: str) -> bool:
    """Whether the step's folder is complete already (a re-run skips it, and says so)."""
    if load_done(final) is None:
        return False
    log(f"{step}: done before, skipped ({final})")
    return True


def differing(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(keys) or "format"


def check_same(folder: Path, done: dict, fingerprint: dict, out: Path) -> None:
    if done.get("fingerprint") != fingerprint:
        raise UserError(
            f"'{folder}' was made from other inputs ({differing(done.get('fingerprint', {}), fingerprint)} differ): "
            f"use another --out, or delete '{out}' to start over"
        )


# --- checks ------------------------------------------------------------------------------------

def parse_pair(pair: str):
    m = re.fullmatch(r"([A-Za-z_]+)-([A-Za-z_]+)", pair or "")
    if not m or m.group(1) == m.group(2):
        raise UserError(f"--pair must be SRC-TGT with two different language codes, e.g. de-en (got '{pair}')")
    return m.group(1), m.group(2)


def shared_data_dir() -> Path:
    return Path(os.environ.get("WMT_DATA") or REPO.parent / "shared" / "data")


def dict_tokens(path: Path) -> List[str]:
    toks = []
    for line in read_lines(path):
        fields = line.rstrip().split(" ")
        if fields and fields[0]:
            toks.append(fields[0])
    return toks


def check_inputs(args, gen_args: List[str]) -> dict:
    """Every check that needs no output; returns the resolved inputs."""
    src_lang, tgt_lang = parse_pair(args.pair)
    check_options(args, gen_args)
    tools = {"preprocess": find_tool("fairseq-mh-preprocess"), "generate": find_tool("fairseq-mh-generate")}
    model, ckpt, dicts = check_model(args, (src_lang, tgt_lang))
    src, ref, src_lines, ref_lines = check_test_set(args)
    bpe_codes = check_bpe_codes(args, dicts[src_lang])
    return dict(src_lang=src_lang, tgt_lang=tgt_lang, model=model, ckpt=ckpt, dicts=dicts, src=src, ref=ref,
                src_lines=src_lines, ref_lines=ref_lines, bpe_codes=bpe_codes, tools=tools)


def check_options(args, gen_args: List[str]) -> None:
    """The numbers, the options after --, and the Python packages the steps need."""
    if args.num_shards < 1:
        raise UserError(f"--num-shards must be >= 1 (got {args.num_shards})")
    if not 0 <= args.shard_id < args.num_shards:
        raise UserError(f"--shard-id must be in 0..{args.num_shards - 1} (got {args.shard_id})")
    if args.batch_size < 1 or args.workers < 1:
        raise UserError(f"--batch-size and --workers must be >= 1 (got {args.batch_size}, {args.workers})")
    for a in gen_args:
        name = a.split("=", 1)[0]
        if name in RESERVED:
            use = RESERVED[name]
            raise UserError(f"{name} after -- is set by this script: "
                            + (f"give {use} before --" if use else "it is not supported here"))
    check_launcher(args)
    require_module("sacremoses", "sacremoses")
    require_module("sacrebleu", "sacrebleu")
    if args.bpe_codes:
        require_module("subword_nmt", "subword-nmt")


def check_launcher(args) -> None:
    """--launcher submitit runs every shard itself; the cluster options mean nothing inline."""
    given = [o for o in CLUSTER_OPTIONS if getattr(args, o) is not None]
    if args.launcher == "inline":
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} applies to --launcher submitit only")
        return
    if args.shard_id_given:
        raise UserError("--launcher submitit runs every shard itself: drop --shard-id")
    for name in ("gpus_per_shard", "time_limit", "array_parallelism"):
        value, lo = getattr(args, name), (0 if name == "gpus_per_shard" else 1)
        if value is not None and value < lo:
            raise UserError(f"--{name.replace('_', '-')} must be >= {lo} (got {value})")
    if args.gpus_per_shard and args.cpu:
        raise UserError("--gpus-per-shard asks for GPUs but --cpu decodes on the CPU: drop one of them")
    require_module("submitit", "submitit")


def check_model(args, langs):
    """(model folder, checkpoint, {lang: dictionary}) of --model and --checkpoint."""
    if not args.model:
        raise UserError("--model is required: the folder of the unpacked model (checkpoint and dict.*.txt)")
    model = Path(args.model)
    if not model.is_dir():
        raise UserError(f"model folder '{model}' does not exist: give the unpacked model folder to --model")
    ckpt = Path(args.checkpoint)
    ckpt = ckpt if ckpt.is_absolute() else model / ckpt
    if not ckpt.is_file():
        raise UserError(f"checkpoint '{ckpt}' not found: --model must hold {args.checkpoint} (or name the file "
                        f"with --checkpoint)")
    dicts = {}
    for lang in langs:
        d = model / f"dict.{lang}.txt"
        if not d.is_file():
            raise UserError(f"dictionary '{d}' not found: decode with the model's own dict.{lang}.txt "
                            f"(it comes with the released model)")
        dicts[lang] = d
    return model, ckpt, dicts


def check_test_set(args):
    """(source, reference, their lines) of --src/--ref, or of the pair's default test set."""
    if args.src and args.ref:
        src, ref = Path(args.src), Path(args.ref)
    elif args.src or args.ref:
        raise UserError("give both --src and --ref (raw source and reference of the same test set)")
    elif args.pair in DEFAULT_TESTSETS:
        base = shared_data_dir()
        src, ref = (base / p for p in DEFAULT_TESTSETS[args.pair])
        if not src.is_file() or not ref.is_file():
            raise UserError(f"default test set not found under '{base}': give --src and --ref, or set WMT_DATA "
                            f"to the folder holding {DEFAULT_TESTSETS[args.pair][0]}")
    else:
        raise UserError(f"no default test set for --pair {args.pair}: give --src and --ref")
    for p, what in ((src, "source"), (ref, "reference")):
        if not p.is_file():
            raise UserError(f"{what} file '{p}' not found: give the raw (untokenized) test text")
    src_lines, ref_lines = read_lines(src), read_lines(ref)
    if not src_lines:
        raise UserError(f"source file '{src}' is empty")
    if len(src_lines) != len(ref_lines):
        raise UserError(f"source '{src}' has {len(src_lines)} lines but reference '{ref}' has {len(ref_lines)}: "
                        f"give the two sides of the same test set")
    return src, ref, src_lines, ref_lines


def check_bpe_codes(args, src_dict: Path) -> Optional[Path]:
    """--bpe-codes, which a model whose dictionary holds BPE pieces needs and any other refuses."""
    bpe_codes = None
    if args.bpe_codes:
        bpe_codes = Path(args.bpe_codes)
        if not bpe_codes.is_file():
            raise UserError(f"BPE codes '{bpe_codes}' not found: give the subword-nmt codes the model was trained with")
    has_bpe = any(t.endswith("@@") for t in dict_tokens(src_dict))
    if has_bpe and not bpe_codes:
        raise UserError(f"the model's dictionary {src_dict} holds BPE pieces (ending in @@) but no "
                        f"--bpe-codes were given: pass the subword-nmt codes the model was trained with")
    if bpe_codes and not has_bpe:
        raise UserError(f"--bpe-codes given but the model's dictionary {src_dict} holds no BPE pieces "
                        f"(none ends in @@): drop --bpe-codes")
    return bpe_codes


# --- steps -------------------------------------------------------------------------------------

def prep_fingerprint(args, inp) -> dict:
    return {"format": FORMAT_VERSION, "pair": args.pair, "src": sha256(inp["src"]), "ref": sha256(inp["ref"]),
            "bpe_codes": sha256(inp["bpe_codes"]) if inp["bpe_codes"] else None,
            "normalize_punctuation": bool(args.normalize_punctuation)}


def fingerprints(args, inp, gen_args: List[str]) -> Dict[str, dict]:
    """What each step's output depends on; a finished step is reused only when it matches."""
    s, t = inp["src_lang"], inp["tgt_lang"]
    prep = prep_fingerprint(args, inp)
    binarized = {**prep, "task": args.task, "dict_src": sha256(inp["dicts"][s]), "dict_tgt": sha256(inp["dicts"][t])}
    st = inp["ckpt"].stat()
    decode = {**binarized, "checkpoint": str(inp["ckpt"].resolve()), "checkpoint_size": st.st_size,
              "checkpoint_mtime_ns": st.st_mtime_ns, "seed": args.seed, "batch_size": args.batch_size,
              "cpu": bool(args.cpu), "generate_args": gen_args}
    return {"prep": prep, "bin": binarized, "decode": decode}


def check_existing(args, out: Path, fps: Dict[str, dict]) -> Dict[str, bool]:
    """Which steps are done already; refuses (before any work) outputs made from other inputs."""
    done = {}
    for step in ("prep", "bin"):
        d = load_done(out / step)
        if d is not None:
            check_same(out / step, d, fps[step], out)
        done[step] = d is not None
    k = args.num_shards
    mine = range(k) if args.launcher == "submitit" else [args.shard_id]
    for shard in (shard_path(out, i, k) for i in mine if shard_path(out, i, k).is_file()):
        header = read_shard_header(shard)
        if header is None or header.get("fingerprint") != fps["decode"]:
            raise UserError(
                f"'{shard}' was decoded with other settings "
                f"({differing((header or {}).get('fingerprint', {}), fps['decode'])} differ): "
                f"use another --out, or delete it")
    done["decode"] = shard_path(out, args.shard_id, k).is_file()
    return done


def step_prepare(args, inp, out: Path, fp: dict) -> None:
    s, t = inp["src_lang"], inp["tgt_lang"]
    final = out / "prep"
    if done_before(final, "prepare"):
        return
    log(f"prepare: Moses tokenization{' + BPE' if inp['bpe_codes'] else ''} of {len(inp['src_lines'])} sentences")
    src_pre = make_preprocessor(s, inp["bpe_codes"], args.normalize_punctuation)
    tgt_pre = make_preprocessor(t, inp["bpe_codes"], args.normalize_punctuation)
    src_tok = [src_pre.tokenize(x) for x in inp["src_lines"]]
    ref_tok = [tgt_pre.tokenize(x) for x in inp["ref_lines"]]
    with atomic_folder(final) as tmp:
        write_lines(tmp / f"test.tok.{s}", src_tok)
        write_lines(tmp / f"test.tok.{t}", ref_tok)
        write_lines(tmp / f"test.{s}", [src_pre.segment(x) for x in src_tok])
        write_lines(tmp / f"test.{t}", [tgt_pre.segment(x) for x in ref_tok])
        write_lines(tmp / f"ref.raw.{t}", inp["ref_lines"])
        atomic_write(tmp / "done.json", json.dumps({"fingerprint": fp, "sentences": len(src_tok),
                                                     "src_lang": s, "tgt_lang": t}, indent=1))


def oov_rate(text_file: Path, dict_file: Path) -> float:
    vocab = set(dict_tokens(dict_file))
    toks = [w for line in read_lines(text_file) for w in line.split()]
    return sum(w not in vocab for w in toks) / max(1, len(toks))


def step_binarize(args, inp, out: Path, fp: dict) -> None:
    s, t = inp["src_lang"], inp["tgt_lang"]
    final = out / "bin"
    if done_before(final, "binarize"):
        return
    rate = oov_rate(out / "prep" / f"test.{s}", inp["dicts"][s])
    log(f"binarize: {rate:.2%} of source tokens are not in the model's dictionary")
    if rate > 0.02:
        log("warning: that is high for a model's own test set: check --bpe-codes and the model's dictionaries")
    with atomic_folder(final) as tmp:
        cmd = [inp["tools"]["preprocess"], "--task", args.task, "--source-lang", s, "--target-lang", t,
               "--srcdict", str(inp["dicts"][s]), "--tgtdict", str(inp["dicts"][t]),
               "--testpref", str(out / "prep" / "test"), "--destdir", str(tmp), "--workers", str(args.workers)]
        run_tool(cmd, out / "logs" / "binarize.log", "fairseq-mh-preprocess")
        for lang in (s, t):
            for ext in ("bin", "idx"):
                if not (tmp / f"test.{s}-{t}.{lang}.{ext}").is_file():
                    raise UserError(f"fairseq-mh-preprocess wrote no test.{s}-{t}.{lang}.{ext}: "
                                    f"see {out / 'logs' / 'binarize.log'}")
        atomic_write(tmp / "done.json", json.dumps({"fingerprint": fp}, indent=1))


def shard_path(out: Path, i: int, k: int) -> Path:
    return out / "shards" / f"shard-{i}-of-{k}.txt"


def read_shard_header(path: Path) -> Optional[dict]:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if not first.startswith(HEADER):
        return None
    try:
        return json.loads(first[len(HEADER):])
    except json.JSONDecodeError:
        return None


def ids_path(out: Path, i: int, k: int) -> Path:
    return out / "shards" / f"ids-{i}-of-{k}.txt"


def write_shard_ids(inp, out: Path, k: int, gen_args: List[str]) -> List[List[int]]:
    """The cost-balanced split of the test set into ``k`` shards, each shard's ids written to
    ids-I-of-K.txt (the same content whoever writes it: a function of the prepared source and
    the sampler settings; concurrent shards may both write it, atomically).  Lengths: the
    model's source tokens (BPE pieces) plus </s>."""
    cfg = sampler_settings(gen_args)
    lengths = [len(line.split()) + 1 for line in read_lines(out / "prep" / f"test.{inp['src_lang']}")]
    shards = balanced_shards(lengths, k, cfg)
    for i, ids in enumerate(shards):
        path, text = ids_path(out, i, k), [str(sid) for sid in ids]
        if not path.is_file() or read_lines(path) != text:
            write_lines(path, text)
    costs = shard_costs(lengths, shards, cfg)
    log(f"shards by expected cost ({cfg.kind.name}): sentences {'/'.join(str(len(x)) for x in shards)}, cost "
        + "/".join(f"{c / max(sum(costs), 1e-9):.1%}" for c in costs))
    return shards


def step_decode(args, inp, out: Path, fp: dict, gen_args: List[str]) -> None:
    s, t = inp["src_lang"], inp["tgt_lang"]
    k, i = args.num_shards, args.shard_id
    final = shard_path(out, i, k)
    if final.is_file():
        log(f"decode: shard {i} of {k} done before, skipped ({final})")
        return
    if k > 1:
        write_shard_ids(inp, out, k, gen_args)
    cmd = [inp["tools"]["generate"], str(out / "bin"), "--task", args.task, "--path", str(inp["ckpt"]),
           "--source-lang", s, "--target-lang", t, "--gen-subset", "test", "--batch-size", str(args.batch_size),
           "--seed", str(args.seed)]
    if args.cpu:
        cmd.append("--cpu")
    if inp["bpe_codes"]:
        cmd.append("--remove-bpe")
    if k > 1:  # this shard's cost-balanced share, under the full test set's ids
        cmd += ["--mh-sentences", str(ids_path(out, i, k))]
    cmd += gen_args
    log(f"decode: shard {i} of {k}: {' '.join(cmd[1:])}")
    with atomic_file(final) as f:
        f.write(HEADER + json.dumps({"fingerprint": fp, "shard_id": i, "num_shards": k, "sharding": "cost"}) + "\n")
        f.flush()
        run_tool(cmd, out / "logs" / f"shard-{i}-of-{k}.log", "fairseq-mh-generate", stdout=f)


def read_hypotheses(path: Path) -> Dict[int, str]:
    hyps: Dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = H_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            sid = int(m.group(1))
            if sid in hyps:
                raise UserError(f"sentence {sid} has two hypotheses in '{path}': delete the file and decode it again")
            hyps[sid] = m.group(3)
    return hyps


def step_merge(args, out: Path) -> dict:
    k = args.num_shards
    prep = load_done(out / "prep")
    if prep is None or not (out / "bin" / "done.json").is_file():
        raise UserError(f"nothing to merge in '{out}': run the shards first (same --out)")
    s, t, n = prep["src_lang"], prep["tgt_lang"], prep["sentences"]
    if args.pair and parse_pair(args.pair) != (s, t):
        raise UserError(f"'{out}' holds a {s}-{t} run, not {args.pair}: use another --out")
    paths = [shard_path(out, i, k) for i in range(k)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} of {k} shards have no output in '{out / 'shards'}' (shard ids "
                        f"{', '.join(map(str, missing))}): run them (--num-shards {k} --shard-id I) before --merge")
    fps = []
    for i, p in enumerate(paths):
        h = read_shard_header(p)
        if h is None or h.get("num_shards") != k or h.get("shard_id") != i:
            raise UserError(f"'{p}' is not shard {i} of {k} written by this script: delete it and decode it again")
        fps.append(h["fingerprint"])
    for i, fp in enumerate(fps[1:], 1):
        if fp != fps[0]:
            raise UserError(f"shards 0 and {i} were decoded with different settings ({differing(fps[0], fp)}): "
                            f"decode all shards with the same options")
    merged: Dict[int, str] = {}
    owner: Dict[int, int] = {}
    for i, p in enumerate(paths):
        for sid, text in read_hypotheses(p).items():
            if sid in merged:
                raise UserError(f"sentence {sid} was decoded by shard {owner[sid]} and shard {i}: shards overlap; "
                                f"decode every shard with the same --batch-size and --num-shards")
            if not 0 <= sid < n:
                raise UserError(f"shard {i} holds sentence {sid} but the test set has {n} sentences")
            merged[sid], owner[sid] = text, i
    absent = [sid for sid in range(n) if sid not in merged]
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
        raise UserError(f"{len(absent)} of {n} sentences have no hypothesis in the {k} shard(s) (ids {shown}): "
                        f"delete the incomplete shard files and decode them again")
    return {"prep": prep, "fingerprint": fps[0], "hyps": [" ".join(merged[sid].split()) for sid in range(n)]}


def step_score(out: Path, merged: dict) -> dict:
    prep = merged["prep"]
    t = prep["tgt_lang"]
    hyp_tok = merged["hyps"]
    detok = moses_detokenizer(t)
    hyp_detok = [detok(line) for line in hyp_tok]
    ref_raw = read_lines(out / "prep" / f"ref.raw.{t}")
    ref_tok = read_lines(out / "prep" / f"test.tok.{t}")
    s_score, s_sig = sacrebleu_score(hyp_detok, ref_raw)
    t_score, t_sig = tokenized_bleu(hyp_tok, ref_tok)
    result = {
        "sentences": len(hyp_tok),
        "sacrebleu": {"score": round(s_score.score, 2), "full": str(s_score), "signature": s_sig,
                      "what": "detokenized hypotheses vs raw references"},
        "tokenized_bleu": {"score": round(t_score.score, 2), "full": str(t_score), "signature": t_sig,
                           "what": "Moses-tokenized, BPE-removed hypotheses vs Moses-tokenized references, "
                                   "whitespace tokens, case-sensitive, no smoothing (multi-bleu.perl semantics; "
                                   "the BLEU Mask-Predict reports)"},
        "decoding": merged["fingerprint"],
    }
    lines = [
        f"sacreBLEU = {s_score.score:.2f}  ({s_score})",
        f"sacreBLEU signature: {s_sig}",
        f"tokenized BLEU = {t_score.score:.2f}  ({t_score})  [Mask-Predict's metric: Moses-tokenized, BPE removed, "
        f"case-sensitive]",
        f"tokenized BLEU signature: {t_sig}",
    ]
    if t == "ro":
        lines.append("note: references for tokenized BLEU had Romanian diacritics removed (as the model's data); "
                     "sacreBLEU compares with the raw references, diacritics included")
    write_lines(out / f"hyp.tok.{t}", hyp_tok)
    write_lines(out / f"hyp.detok.{t}", hyp_detok)
    atomic_write(out / "scores.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_lines(out / "scores.txt", lines)
    print("\n".join(lines), flush=True)
    return result


# --- shards as cluster jobs -----------------------------------------------------------------

def shard_command(args, inp, i: int, gen_args: List[str]) -> List[str]:
    """This script, inline, for shard ``i`` alone: the same inputs, every path absolute (a
    Slurm job may start elsewhere)."""
    a = ["--pair", args.pair, "--model", inp["model"].resolve(), "--checkpoint", inp["ckpt"].resolve(),
         "--src", inp["src"].resolve(), "--ref", inp["ref"].resolve(), "--out", Path(args.out).resolve(),
         "--task", args.task, "--batch-size", args.batch_size, "--seed", args.seed, "--workers", args.workers,
         "--num-shards", args.num_shards, "--shard-id", i]
    a += ["--bpe-codes", inp["bpe_codes"].resolve()] if inp["bpe_codes"] else []
    a += ["--cpu"] * bool(args.cpu) + ["--normalize-punctuation"] * bool(args.normalize_punctuation)
    return [sys.executable, str(Path(__file__).resolve()), *map(str, a), "--", *gen_args]


def cluster_options(args, out: Path):
    from fairseq_mh.cluster import ClusterOptions

    k = args.num_shards
    return ClusterOptions(
        folder=Path(args.job_logs or out / "logs" / "jobs").resolve(), partition=args.partition,
        gpus_per_job=args.gpus_per_shard if args.gpus_per_shard is not None else (0 if args.cpu else 1),
        time_limit_min=args.time_limit or 240, array_parallelism=args.array_parallelism or k,
        job_name=f"wmt_eval-{args.pair}")


def run_shard_jobs(args, inp, out: Path, gen_args: List[str]) -> None:
    """Submits every shard without output as a job, waits, and refuses to merge if one failed."""
    from fairseq_mh.cluster import run_commands

    k = args.num_shards
    if k > 1:
        write_shard_ids(inp, out, k, gen_args)
    todo = [i for i in range(k) if not shard_path(out, i, k).is_file()]
    if len(todo) < k:
        log(f"decode: {k - len(todo)} of {k} shards done before, skipped")
    if not todo:
        return
    opts = cluster_options(args, out)
    log(f"decode: submitting {len(todo)} shard job(s); job logs in {opts.folder}")
    failures = run_commands({i: shard_command(args, inp, i, gen_args) for i in todo}, opts, log)
    if failures:
        raise UserError(f"{len(failures)} of {k} shards failed: "
                        + "; ".join(f"shard {f.shard}: {f.line} [log: {f.log}]" for f in failures)
                        + " -- run the same command again to resubmit them (finished shards are kept)")


# --- command line ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UserError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG, allow_abbrev=False,
        description="WMT evaluation of a Mask-Predict / CMLM checkpoint with fairseq-mh-generate. "
                    "Options after -- go to fairseq-mh-generate (e.g. -- --sampler mh --mh-epochs 4).")
    p.add_argument("--pair", required=True, help="SRC-TGT, e.g. de-en (the wrappers set it)")
    p.add_argument("--model", help="model folder: checkpoint and dict.SRC.txt, dict.TGT.txt")
    p.add_argument("--checkpoint", default="checkpoint_best.pt", help="checkpoint file in --model (or a path)")
    p.add_argument("--src", help="raw source text (.gz accepted); default: the pair's WMT test set in $WMT_DATA")
    p.add_argument("--ref", help="raw reference text (.gz accepted)")
    p.add_argument("--bpe-codes", help="subword-nmt codes the model was trained with (BPE models)")
    p.add_argument("--out", required=True, help="output folder (re-runs skip what is done there)")
    p.add_argument("--task", default="translation_self", choices=["translation_self", "translation_mh"],
                   help="translation_self: Mask-Predict checkpoints; translation_mh: fairseq cmlm_transformer")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cpu", action="store_true", help="decode on the CPU")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--num-shards", type=int, default=1,
                   help="split decoding into K pieces of equal expected cost (one process or job each)")
    p.add_argument("--shard-id", type=int, default=None, help="the piece this process decodes (0..K-1; default 0)")
    p.add_argument("--merge", action="store_true", help="merge the K shards' outputs and score them")
    p.add_argument("--workers", type=int, default=1, help="processes for binarization")
    p.add_argument("--normalize-punctuation", action="store_true",
                   help="Moses normalize-punctuation before tokenizing (off: Mask-Predict's data did not use it)")
    c = p.add_argument_group("cluster (--launcher submitit)")
    c.add_argument("--launcher", choices=["inline", "submitit"], default="inline",
                   help="inline: this process decodes --shard-id; submitit: every shard is a job (a Slurm array "
                        "where Slurm is available, local processes otherwise), then the merge")
    c.add_argument("--partition", help="Slurm partition of the shard jobs")
    c.add_argument("--gpus-per-shard", type=int, help="GPUs per shard job (default 1, 0 with --cpu)")
    c.add_argument("--time-limit", type=int, help="minutes a shard job may run (default 240)")
    c.add_argument("--array-parallelism", type=int, help="shard jobs running at once (default: all)")
    c.add_argument("--job-logs", help="folder of the jobs' logs and submitit files (default OUT/logs/jobs)")
    return p


def parse_args(argv: List[str]):
    args = build_parser().parse_args(argv)
    args.shard_id_given = args.shard_id is not None
    args.shard_id = args.shard_id or 0
    return args


def evaluate(argv: List[str], gen_args: List[str]) -> None:
    """The steps a command line asks for (all of them, one shard's, or the merge)."""
    args = parse_args(argv)
    out = Path(args.out)
    if args.merge and args.launcher == "submitit":
        raise UserError("--launcher submitit merges by itself: drop --merge")
    if args.merge:
        if args.num_shards < 1:
            raise UserError(f"--num-shards must be >= 1 (got {args.num_shards})")
        require_module("sacremoses", "sacremoses")
        require_module("sacrebleu", "sacrebleu")
        step_score(out, step_merge(args, out))
        return
    inp = check_inputs(args, gen_args)
    fps = fingerprints(args, inp, gen_args)
    check_existing(args, out, fps)
    step_prepare(args, inp, out, fps["prep"])
    step_binarize(args, inp, out, fps["bin"])
    if args.launcher == "submitit":
        run_shard_jobs(args, inp, out, gen_args)
    else:
        step_decode(args, inp, out, fps["decode"], gen_args)
    if args.num_shards == 1 or args.launcher == "submitit":
        step_score(out, step_merge(args, out))
    else:
        log(f"shard {args.shard_id} of {args.num_shards} done; when all are, run again with "
            f"--num-shards {args.num_shards} --merge")


def _problem(err: BaseException) -> str:
    """A user error's message; for a file the system refused (an unwritable --out ...), its reason and name."""
    if isinstance(err, OSError) and not isinstance(err, UserError):
        return f"{err.strerror or err} ({err.filename or ''})"
    return str(err)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    gen_args: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, gen_args = argv[:cut], argv[cut + 1:]
    try:
        with exit_on_user_error(PROG, also=(OSError,), message=_problem):
            evaluate(argv, gen_args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
