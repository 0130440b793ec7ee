"""The fairseq generator: a fairseq batch in, chains through the engine, hypotheses out.

How length candidates and chains combine:
* the model's length predictor gives ``--length-beam`` candidates per sentence
  (``--length-candidates``);
* every candidate length gets ``--num-chains`` chains, all warm-started from the same
  state (computed once);
* each chain outputs its lowest-energy post-burn-in state or its last state
  (``--mh-select``); with ``--nbest`` > 1 and ``best``, every post-burn-in sample is a
  candidate; with ``mbr``, every post-burn-in sample of the sentence is, ranked by its
  expected utility against the others (``mbr_output``) instead of the rule below;
* candidates of all lengths and chains are ranked by ``--hypothesis-score``: minus the
  target energy per free position (``mean-energy``, default: energies grow with length, so
  totals would favour short outputs) or minus the total (``energy``); the ``--nbest`` best
  distinct sequences are returned, best first.
The mask-predict baseline ranks its candidates by mean token log-probability, as the
original.  Hypothesis scores printed by fairseq-generate are these scores; positional
scores are log p_mlm(x_t | rest) (minus the local energy terms) for chain samplers and
the token log-probabilities for mask-predict.
"""

from __future__ import annotations

import array
import logging
import os
import time
import zlib
from typing import List, Optional

import torch

from .core import RowEvaluator, SamplerConfig, Starts, build_decoder, rng
from .core.budget import plan_groups, run_in_groups, start_bytes
from .core.cost import expected_rows
from .core.energy import ENERGIES
from .cpu_runtime import call_token_budget
from .diagnostics import Convergence
from .errors import UserError
from .heap import release_freed_memory
from .mbr_output import MBRSelector
from .models.adapters import adapter_for, length_candidates
from .progress import DecodeProgress
from .trace import sample_records, trace_records, write_records
from .signals import RecordFile

logger = logging.getLogger(__name__)

# generators built by the running command (cleared when one starts), so it can say what each
# spent when it ends
BUILT: List["MHGenerator"] = []

__all__ = ["MHGenerator"]


def auto_memory_budget(device: torch.device) -> int:
    """The default --mh-max-memory: half the free memory of a CUDA device, else a quarter
    of the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


class MHGenerator:
    """Drop-in replacement for fairseq's IterativeRefinementGenerator."""

    def __init__(
        self,
        tgt_dict,
        sampler_cfg: SamplerConfig,
        length_beam: int = 5,
        length_style: str = "top",
        hypothesis_score: str = "mean-energy",
        nbest: int = 1,
        max_tokens: Optional[int] = None,
        max_memory: Optional[int] = None,
        batching: str = "sentence",
        trace_path: Optional[str] = None,
        dump_path: Optional[str] = None,
        progress: Optional[DecodeProgress] = None,
        output_text=None,
    ):
        self.cfg = sampler_cfg  # validated when it was made
        self.tgt_dict = tgt_dict
        self.length_beam = length_beam
        self.length_style = length_style
        self.hypothesis_score = hypothesis_score
        self.nbest = nbest
        self.max_tokens = max_tokens  # None: cpu_runtime.call_token_budget of the model's device
        self.max_memory = max_memory  # bytes of engine tensors; None: no bound; -1: auto
        self.batching = batching  # --mh-batching: "sentence" calls hold one sentence's rows, "shared" many
        self.pad = tgt_dict.pad()
        self.symbols_to_strip_from_output = {tgt_dict.bos(), tgt_dict.eos()}
        # each batch's records reach the file whole, signals held back meanwhile (fairseq_mh.signals)
        self._trace = RecordFile(trace_path) if trace_path else None
        self._dump = RecordFile(dump_path) if dump_path else None
        self.progress = progress or DecodeProgress(mode="off")
        BUILT.append(self)
        self.totals = {"sentences": 0, "rows": 0, "calls": 0, "proposals": 0, "accepted": 0, "novel": 0,
                       "seconds": 0.0}
        # chain samplers: convergence diagnostics per batch (trace records, the corpus summary)
        self.convergence = Convergence(sampler_cfg.energy) if sampler_cfg.kind.is_chain else None
        # --mh-select mbr ranks samples by expected utility on the printed text (output_text)
        self.mbr = (MBRSelector(sampler_cfg.mbr_utility, output_text or self._text, sampler_cfg.mbr_score_weight,
                                sampler_cfg.energy)
                    if sampler_cfg.mh_select == "mbr" else None)

    # ------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, **kwargs):
        if len(models) != 1:
            raise UserError(f"MH decoding takes one model, got an ensemble of {len(models)}: pass a single --path")
        if prefix_tokens is not None:
            raise UserError("--prefix-size is not supported by MH decoding: drop it")
        if constraints is not None:
            raise UserError("lexical constraints are not supported by MH decoding: drop --constraints")
        t0 = time.perf_counter()
        model = models[0]
        model.eval()
        adapter = adapter_for(model, self.tgt_dict)
        net_input = sample["net_input"]
        B = net_input["src_tokens"].size(0)
        encs = adapter.encode(net_input, batched=self.batching == "shared")
        lp, lens = adapter.length_distribution(encs, net_input)
        cand = length_candidates(lp, lens, self.length_beam, self.length_style, max_len=adapter.max_target_length)
        l = cand.size(1)
        tokens, free, decode = adapter.target_rows(cand.reshape(-1))
        dev = tokens.device  # the model's: the engine runs there
        ids = sample["id"] if "id" in sample else self._content_ids(net_input["src_tokens"])
        ids = ids.to(dev)
        starts = Starts(
            tokens=tokens,
            free=free,
            context=torch.arange(B, device=dev).repeat_interleave(l),
            keys=rng.chain_keys(self.cfg.seed, ids.repeat_interleave(l), torch.arange(l, device=dev).repeat(B)),
            decode=decode,
        )
        ev = RowEvaluator(adapter.conditional(encs), pad=self.pad, max_tokens=self.max_tokens or call_token_budget(dev),
                          group_by_context=self.batching == "sentence")
        self.progress.begin_batch(B, expected_rows(self.cfg, starts.free.sum(1).tolist()), ev)
        decoder = build_decoder(self.cfg, ev, adapter.mask, adapter.allowed(), monitor=self.progress.update)
        per_start = [start_bytes(self.cfg, tokens.size(1), adapter.vocab_size)] * tokens.size(0)
        budget = self.max_memory if self.max_memory != -1 else auto_memory_budget(tokens.device)
        res = run_in_groups(decoder, starts, plan_groups(starts.context, per_start, budget))
        self.progress.end_batch()
        self._count(res, ev, B, time.perf_counter() - t0)
        diagnostics = self.convergence.add(res, ids, cand.reshape(-1), l) if self.convergence else []
        if self._trace is not None:
            write_records(self._trace, trace_records(res, ids, cand.reshape(-1), l, self.cfg.sampler,
                                                     self.cfg.energy, self._text) + diagnostics)
        if self._dump is not None:
            write_records(self._dump, sample_records(res, ids, l, self._text))
        hypotheses = [self._hypotheses(res, b, l) for b in range(B)]
        del res, ev, decoder, encs, starts  # the batch's caches, so that the heap can give them back
        release_freed_memory()
        return hypotheses

    def _count(self, res, ev, sentences: int, seconds: float) -> None:
        """Adds a batch to the run's totals (the end-of-run summary)."""
        t = self.totals
        t["sentences"] += sentences
        t["rows"] += ev.rows
        t["calls"] += ev.calls
        t["seconds"] += seconds
        for name in ("proposals", "accepted", "novel"):
            t[name] += int(getattr(res.stats, name).sum())

    def summary_line(self) -> str:
        """What the run spent: rows, rows/s, acceptance, novel rate, time per sentence."""
        t = self.totals
        n, secs, prop = t["sentences"], t["seconds"], t["proposals"]
        rates = (f", acceptance {t['accepted'] / prop:.3f}, novel {t['novel'] / prop:.3f} over {prop} proposals"
                 if prop else "")
        return (f"decoded {n} sentences with {self.cfg.sampler}: {t['rows']} model rows in {t['calls']} calls, "
                f"{t['rows'] / max(secs, 1e-9):.0f} rows/s{rates}, {secs / max(n, 1):.3f} s per sentence")

    def _content_ids(self, src_tokens):
        """Stand-in sentence ids for batches without any (fairseq-interactive): a checksum of
        the source tokens, so a sentence draws the same numbers wherever it appears."""
        rows = [array.array("q", r[r.ne(self.pad)].tolist()).tobytes() for r in src_tokens]  # int64 bytes
        return torch.tensor([zlib.crc32(b) for b in rows], dtype=torch.long, device=src_tokens.device)

    # ------------------------------------------------------------------
    def _candidates(self, res, chains):
        """(tokens, score, energy, positional scores) of every output candidate of ``chains``."""
        if res.score is not None:  # the decoder ranks its own outputs (mask-predict)
            return res.tokens[chains], res.score[chains].double(), res.energy[chains], res.positional_scores[chains]
        if self.nbest > 1 and self.cfg.mh_select == "best":  # every post-burn-in sample competes
            L = res.samples.size(-1)
            tok = res.samples[:, chains].reshape(-1, L)
            energy = res.sample_energy[:, chains].reshape(-1, 2)
            terms = res.sample_terms[:, chains].reshape(-1, L, 2)
            chain_of = chains.repeat(res.samples.size(0))
        else:
            tok, energy, terms, chain_of = res.tokens[chains], res.energy[chains], res.terms[chains], chains
        e = energy[:, ENERGIES[self.cfg.energy]]
        score = -e / res.n_free[chain_of].clamp(min=1).double() if self.hypothesis_score == "mean-energy" else -e
        return tok, score, energy, -terms[..., 1]  # log p_mlm(x_t | rest); 0 at fixed symbols

    def _hypotheses(self, res, b: int, l: int) -> List[dict]:
        """The ``nbest`` best distinct candidates of sentence b, best first."""
        chains = ((res.start // l) == b).nonzero().squeeze(1)
        tok, score, energy, pos = self.mbr.candidates(res, chains) if self.mbr else self._candidates(res, chains)
        # best first; stable sort keeps the first of equal scores (the original's choice)
        order = torch.sort(-score, stable=True)[1]
        out, seen = [], set()
        for i in order.tolist():
            row = tok[i]
            row = row[row.ne(self.pad)]
            if len(row) and row[0] == self.tgt_dict.bos():
                row = row[1:]
            key = tuple(row.tolist())
            if key in seen:
                continue
            seen.add(key)
            p = pos[i][tok[i].ne(self.pad)]
            p = p[-len(row):] if len(row) else p[:0]
            out.append({"tokens": row, "score": torch.tensor(float(score[i])), "positional_scores": p.float(),
                        "alignment": None, "attention": None, "hypo_attn": None, "steps": res.steps,
                        "energy": energy[i].tolist()})
            if len(out) == self.nbest:
                break
        return out

    def _text(self, row):
        return self.tgt_dict.string(row[row.ne(self.pad)], extra_symbols_to_ignore=self.symbols_to_strip_from_output)

    def close(self):
        for name in ("_trace", "_dump"):
            f = getattr(self, name)
            if f is not None:
                f.close()
                setattr(self, name, None)
