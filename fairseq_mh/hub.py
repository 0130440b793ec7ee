"""A Python API in fairseq's hub style: load a model once, translate, sample, diagnose.

    from fairseq_mh import MHTranslator
    mt = MHTranslator.from_pretrained("../shared/models/m30k-cmlm-e33", spm="spm.model")
    mt.translate("Ein Hund läuft.", sampler="mh", mh_epochs=10, num_chains=4, mh_select="mbr")
    mt.sample("Ein Hund läuft.", n=4, sampler="pt-mh", mh_epochs=8)   # samples with energies
    mt.diagnostics(["Ein Hund läuft."], sampler="mh", num_chains=4)     # R-hat, ESS per energy

Options are the command line's, spelled as its fields (``mh_epochs`` for ``--mh-epochs``),
with its defaults, and validated by the same code (``options.validate_decoding_options``):
a bad value raises ``ConfigError`` naming the option.  Decoding is ``evaluation.Decoder``'s
(in-process, SentencePiece when the model has one); samples and statistics are read from
the generator's own ``--mh-trace`` and ``--mh-dump-samples`` records.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, fields
from enum import EnumMeta
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from .core.config import ConfigError
from .trace import DiagnosticsRecord, read_diagnostics, read_samples, read_trace

__all__ = ["MHTranslator", "Sample", "Diagnostics"]

# generator settings: option name -> MHGenerator argument
_GENERATOR = {"length_beam": "length_beam", "length_candidates": "length_style",
              "hypothesis_score": "hypothesis_score", "nbest": "nbest", "mh_max_tokens": "max_tokens"}


@dataclass(frozen=True)
class Sample:
    """One post-burn-in state of one chain."""

    text: str
    energy_raw: float
    energy_local: float
    chain: int
    epoch: int
    length: int  # target length candidate (as the model counts it)
    length_rank: int
    acceptance: Optional[float]  # share of the epoch's proposals accepted
    novel: Optional[float]  # ... accepted and different from the state
    chain_acceptance: Optional[float]  # over the chain's post-burn-in epochs


@dataclass(frozen=True)
class Diagnostics:
    """Per (sentence, length candidate, energy) records, and the corpus summary line."""

    records: List[DiagnosticsRecord]
    summary: str


def options_namespace(sampler: str, options: Dict, seed: int) -> argparse.Namespace:
    """The command line's decoding options with ``options`` in place, checked like argparse
    checks choices; unknown names are refused."""
    from .options import MHDecodingConfig

    known = {f.name: f for f in fields(MHDecodingConfig) if f.name != "seed"}
    unknown = sorted(set(options) - set(known) - {"nbest"})
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join('--' + u.replace('_', '-') for u in unknown)}")
    values = {name: f.default for name, f in known.items()}
    values.update(options, sampler=sampler, seed=options.get("seed", seed), nbest=options.get("nbest", 1))
    for name, f in known.items():
        if isinstance(f.type, EnumMeta) and str(values[name]) not in {m.value for m in f.type}:
            choices = ", ".join(m.value for m in f.type)
            raise ConfigError(f"--{name.replace('_', '-')} must be one of {choices} (got {values[name]!r})")
    return argparse.Namespace(**values)


class MHTranslator:
    """A loaded CMLM with the plug-in's decoders."""

    def __init__(self, decoder, seed: int = 1):
        self.decoder = decoder
        self.seed = seed

    @classmethod
    def from_pretrained(cls, model_dir, checkpoint_file: str = "checkpoint.pt", task: str = "translation_mh",
                        spm: Optional[str] = "spm.model", source_lang: str = "de", target_lang: str = "en",
                        data: Optional[str] = None, seed: int = 1) -> "MHTranslator":
        """Loads ``model_dir/checkpoint_file`` with the dictionaries of ``data`` (default:
        ``model_dir``) and the SentencePiece model ``model_dir/spm`` (None or absent: none)."""
        from .evaluation import load_decoder
        from .errors import UserError

        folder = Path(model_dir)
        ckpt = folder / checkpoint_file
        if not ckpt.is_file():
            raise UserError(f"{ckpt} is not a file: pass the model folder and its checkpoint_file")
        spm_path = folder / spm if spm else None
        if spm_path is not None and not spm_path.is_file():
            spm_path = None
        return cls(load_decoder(ckpt, Path(data) if data else folder, task, source_lang, target_lang, spm_path,
                                seed=seed), seed)

    def _generator(self, sampler: str, options: Dict, **files):
        from .options import validate_decoding_options

        ns = options_namespace(sampler, options, self.seed)
        ns.mh_trace, ns.mh_dump_samples = files.get("trace_path"), files.get("dump_path")
        cfg = validate_decoding_options(ns)
        if ns.nbest < 1:
            raise ConfigError(f"--nbest must be an integer >= 1 (got {ns.nbest})")
        kwargs = {arg: str(getattr(ns, name)) if name in ("length_candidates", "hypothesis_score")
                  else getattr(ns, name) for name, arg in _GENERATOR.items()}
        return self.decoder.generator(cfg, **kwargs, **files)

    def translate(self, sentences: Union[str, Sequence[str]], sampler: str = "mask-predict",
                  batch_size: int = 32, **options) -> Union[str, List[str]]:
        """The best hypothesis of each sentence (a string for a string)."""
        one = isinstance(sentences, str)
        batch = [sentences] if one else list(sentences)
        gen = self._generator(sampler, options)
        out = self.decoder.hypotheses(gen, batch, batch_size)
        texts = [self.decoder.decode_tokens(out[i][0]["tokens"]) for i in range(len(batch))]
        return texts[0] if one else texts

    def sample(self, sentence: str, n: int = 4, sampler: str = "mh", **options) -> List[Sample]:
        """Every post-burn-in state of ``n`` chains (per length candidate) for ``sentence``."""
        with tempfile.TemporaryDirectory() as tmp:
            trace, dump = Path(tmp) / "trace.jsonl", Path(tmp) / "samples.jsonl"
            gen = self._generator(sampler, {**options, "num_chains": n}, trace_path=str(trace), dump_path=str(dump))
            self.decoder.hypotheses(gen, [sentence])
            gen.close()
            epochs = {(r.length_rank, r.chain, r.epoch): r for r in read_trace(trace) if r.record == "epoch"}
            samples = read_samples(dump)
        if not gen.cfg.kind.is_chain:
            raise ConfigError(f"--sampler {sampler} is not a chain sampler: it has no samples")
        out = []
        for s in samples:
            r = epochs[(s.length_rank, s.chain, s.epoch)]
            kept = [e for (j, c, _), e in epochs.items() if j == s.length_rank and c == s.chain and not e.burn_in]
            prop = sum(e.proposals for e in kept)
            acc = sum((e.acceptance or 0.0) * e.proposals for e in kept)
            out.append(Sample(text=self.decoder.detokenize(s.tokens), energy_raw=r.energy_raw,
                              energy_local=r.energy_local, chain=s.chain, epoch=s.epoch, length=r.length,
                              length_rank=s.length_rank, acceptance=r.acceptance, novel=r.novel,
                              chain_acceptance=acc / prop if prop else None))
        return out

    def diagnostics(self, sentences: Union[str, Sequence[str]], sampler: str = "mh", batch_size: int = 32,
                    **options) -> Diagnostics:
        """Convergence diagnostics of a run on ``sentences`` (split R-hat, bulk and tail ESS
        of both energies per sentence and length candidate) and its corpus summary."""
        batch = [sentences] if isinstance(sentences, str) else list(sentences)
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.jsonl"
            gen = self._generator(sampler, options, trace_path=str(trace))
            if gen.convergence is None:
                raise ConfigError(f"--sampler {sampler} is not a chain sampler: there are no chains to diagnose")
            self.decoder.hypotheses(gen, batch, batch_size)
            gen.close()
            return Diagnostics(read_diagnostics(trace), gen.convergence.line())
