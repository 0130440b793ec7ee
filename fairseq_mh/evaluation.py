"""Decode raw sentences in-process with several decoder settings and summarise each run.

Used by the demo and the benchmarks: loads a checkpoint once, encodes raw text (SentencePiece
when the model has one), decodes with ``MHGenerator`` per setting, and reports BLEU (sacreBLEU
on detokenized text), both energies of the output, acceptance, novel-transition rate, model
rows and wall-clock time.  Statistics come from the generator's own ``--mh-trace`` records.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .trace import by_epoch, proposal_rates, read_trace

__all__ = ["Decoder", "RunSummary", "load_decoder"]


@dataclass
class RunSummary:
    name: str
    hypotheses: List[str]
    bleu: float
    energy_raw: float  # mean over sentences of the output's energies
    energy_local: float
    acceptance: Optional[float]  # over all proposals of all chains and epochs
    novel: Optional[float]
    rows: int
    seconds: float
    curves: Dict[str, List[float]] = field(default_factory=dict)  # per epoch, mean over chains

    def as_row(self) -> dict:
        return {"decoder": self.name, "BLEU": self.bleu, "E_raw": self.energy_raw, "E_local": self.energy_local,
                "acceptance": self.acceptance, "novel": self.novel, "rows": self.rows, "seconds": self.seconds}


class Decoder:
    """A loaded model with its task and (optional) SentencePiece model."""

    def __init__(self, task, models, spm=None):
        self.task, self.models, self.spm = task, models, spm

    def encode(self, sentences: List[str]):
        d = self.task.source_dictionary
        pieces = [" ".join(self.spm.encode(s, out_type=str)) if self.spm else s for s in sentences]
        return [d.encode_line(p, add_if_not_exist=False, append_eos=True).long() for p in pieces]

    def decode_tokens(self, tokens) -> str:
        """The detokenized text of a hypothesis or a sample (pad, <s>, </s> dropped)."""
        d = self.task.target_dictionary
        text = d.string(tokens[tokens.ne(d.pad())], extra_symbols_to_ignore={d.bos(), d.eos()})
        return self.detokenize(text)

    def detokenize(self, text: str) -> str:
        """Dictionary tokens as text (``Dictionary.string``'s output) -> the detokenized text."""
        return self.spm.decode(text.split()) if self.spm else text

    def generator(self, sampler_cfg, generator_cls=None, **options):
        """An MHGenerator for this model whose MBR compares detokenized text (``decode_tokens``)."""
        from .generator import MHGenerator

        return (generator_cls or MHGenerator)(self.task.target_dictionary, sampler_cfg,
                                              output_text=self.decode_tokens, **options)

    def batch(self, sentences: List[str]) -> dict:
        """One fairseq sample (ids, net_input) of ``sentences``, as fairseq-generate batches them."""
        toks = self.encode(sentences)
        ds = self.task.build_dataset_for_inference(toks, [len(t) for t in toks])
        return ds.collater([ds[i] for i in range(len(ds))])

    def hypotheses(self, gen, sentences: List[str], batch_size: int = 32, progress=None) -> Dict[int, list]:
        """{index: nbest hypotheses} of ``sentences`` decoded by ``gen``, batch by batch."""
        toks = self.encode(sentences)
        ds = self.task.build_dataset_for_inference(toks, [len(t) for t in toks])
        out: Dict[int, list] = {}
        for start in range(0, len(ds), batch_size):
            sample = ds.collater([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
            for i, h in zip(sample["id"].tolist(), gen.generate(self.models, sample)):
                out[i] = h
            if progress:
                progress(len(out), len(ds))
        return out

    def run(self, name: str, sampler_cfg, sentences: List[str], references: Optional[List[str]] = None,
            batch_size: int = 32, length_beam: int = 1, length_style: str = "top", trace: Optional[Path] = None,
            progress=None, decode_progress=None, batching: str = "sentence", max_tokens: Optional[int] = None,
            generator_cls=None, dump: Optional[Path] = None) -> RunSummary:
        """Decodes ``sentences``; ``progress(done, total)`` is called after each batch and
        ``decode_progress`` (a ``progress.DecodeProgress``) reports inside batches.  A given
        ``trace`` is kept; ``dump`` receives the post-burn-in samples (``--mh-dump-samples``)."""
        import sacrebleu

        own_trace = trace is None
        if own_trace:
            tmp = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)
            tmp.close()
            trace = Path(tmp.name)
        gen = self.generator(sampler_cfg, generator_cls, length_beam=length_beam, length_style=length_style,
                             trace_path=str(trace), progress=decode_progress, batching=batching, max_tokens=max_tokens,
                             dump_path=None if dump is None else str(dump))
        t0 = time.time()
        out = {i: h[0] for i, h in self.hypotheses(gen, sentences, batch_size, progress).items()}
        seconds = time.time() - t0
        gen.close()
        recs = read_trace(trace)
        if own_trace:
            trace.unlink()
        hyps = [self.decode_tokens(out[i]["tokens"]) for i in range(len(sentences))]
        bleu = sacrebleu.corpus_bleu(hyps, [references]).score if references else float("nan")
        prop, acceptance, novel = proposal_rates(recs)
        curves = {}
        if prop:
            epochs = by_epoch(recs).values()
            curves = {
                "energy_local": [sum(r.energy_local for r in g) / len(g) for g in epochs],
                "energy_raw": [sum(r.energy_raw for r in g) / len(g) for g in epochs],
                "acceptance": [proposal_rates(g)[1] or 0.0 for g in epochs],
            }
        n = len(sentences)
        return RunSummary(
            name=name,
            hypotheses=hyps,
            bleu=bleu,
            energy_raw=sum(out[i]["energy"][0] for i in range(n)) / n,
            energy_local=sum(out[i]["energy"][1] for i in range(n)) / n,
            acceptance=acceptance,
            novel=novel,
            rows=gen.totals["rows"],
            seconds=seconds,
            curves=curves,
        )


def load_decoder(checkpoint: Path, dict_dir: Path, task_name: str = "translation_mh", source_lang: str = "de",
                 target_lang: str = "en", spm_model: Optional[Path] = None, seed: int = 1) -> Decoder:
    """Loads a checkpoint for in-process decoding (dictionaries from ``dict_dir``); the
    decoders' configs carry their own seed, ``seed`` is only the task's."""
    from fairseq import checkpoint_utils

    import fairseq_mh  # noqa: F401  (registers the plug-in)
    from .tasks.translation_mh import TranslationMHConfig, TranslationMHTask
    from .tasks.translation_self import TranslationSelfConfig, TranslationSelfTask

    cfg_cls, task_cls = ((TranslationMHConfig, TranslationMHTask) if task_name == "translation_mh"
                         else (TranslationSelfConfig, TranslationSelfTask))
    task = task_cls.setup_task(cfg_cls(_name=task_name, data=str(dict_dir), source_lang=source_lang, seed=seed,
                                       target_lang=target_lang))
    models, _ = checkpoint_utils.load_model_ensemble([str(checkpoint)], task=task)
    models = [m.eval().float() for m in models]
    spm = None
    if spm_model is not None:
        import sentencepiece

        spm = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    return Decoder(task, models, spm)


def load_multi30k(shared: Path, model_name: str, n: Optional[int] = None, split: str = "test_2016_flickr"):
    """(decoder, sources, references): a Multi30k CMLM of ``shared``/models and the first ``n``
    sentences of ``split`` (de->en; ``val`` to tune on), for benchmarks; decoding on two threads."""
    import gzip

    import torch

    from .errors import UserError

    model, data = Path(shared) / "models" / model_name, Path(shared) / "data" / "multi30k"
    if not (model / "checkpoint.pt").is_file() or not (data / f"{split}.de.gz").is_file():
        raise UserError(f"{model} or {data} is missing: pass --shared (the folder with models/ and data/)")
    torch.set_num_threads(2)

    def lines(lang):
        with gzip.open(data / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
            return f.read().splitlines()[:n]

    dec = load_decoder(model / "checkpoint.pt", model, "translation_mh", "de", "en", model / "spm.model")
    return dec, lines("de"), lines("en")


def markdown_table(rows: List[dict]) -> str:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    lines = ["| decoder | BLEU | E_raw | E_local | acceptance | novel | model rows | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['decoder']} | {r['BLEU']:.2f} | {r['E_raw']:.2f} | {r['E_local']:.2f} | "
                     f"{fmt(r['acceptance'], '.3f')} | {fmt(r['novel'], '.3f')} | {r['rows']} | {r['seconds']:.1f} |")
    return "\n".join(lines)
