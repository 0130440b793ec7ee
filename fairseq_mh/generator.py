"""The fairseq generator: a fairseq batch in, chains through the engine, hypotheses out.

How length candidates and chains combine:
* the model's length predictor gives ``--length-beam`` candidates per sentence
  (``--length-candidates``);
* every candidate length gets ``--num-chains`` chains, all warm-started from the same
  state (computed once);
* each chain outputs its lowest-energy post-burn-in state or its last state
  (``--mh-select``); with ``--nbest`` > 1 and ``best``, every post-burn-in sample is a
  candidate;
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

import json
import logging
from typing import List, Optional

import torch

from .core import ChainSampler, RowEvaluator, SamplerConfig, Starts, rng
from .core.energy import ENERGIES
from .errors import UserError
from .models.adapters import adapter_for, length_candidates
from .signals import RecordFile

logger = logging.getLogger(__name__)

__all__ = ["MHGenerator"]


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
        max_tokens: int = 32768,
        trace_path: Optional[str] = None,
        dump_path: Optional[str] = None,
    ):
        self.cfg = sampler_cfg.validate()
        self.tgt_dict = tgt_dict
        self.length_beam = length_beam
        self.length_style = length_style
        self.hypothesis_score = hypothesis_score
        self.nbest = nbest
        self.max_tokens = max_tokens
        self.eos = tgt_dict.eos()
        self.pad = tgt_dict.pad()
        self.symbols_to_strip_from_output = {tgt_dict.bos(), tgt_dict.eos()}
        self.trace_path = trace_path
        # each batch's records reach the file whole, signals held back meanwhile (fairseq_mh.signals)
        self._trace = RecordFile(trace_path) if trace_path else None
        self._dump = RecordFile(dump_path) if dump_path else None
        self.totals = {"sentences": 0, "rows": 0, "calls": 0}

    # ------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, **kwargs):
        if len(models) != 1:
            raise UserError(f"MH decoding takes one model, got an ensemble of {len(models)}: pass a single --path")
        if prefix_tokens is not None:
            raise UserError("--prefix-size is not supported by MH decoding: drop it")
        if constraints is not None:
            raise UserError("lexical constraints are not supported by MH decoding: drop --constraints")
        model = models[0]
        model.eval()
        adapter = adapter_for(model, self.tgt_dict)
        net_input = sample["net_input"]
        B = net_input["src_tokens"].size(0)
        encs = adapter.encode(net_input)
        lp, lens = adapter.length_distribution(encs, net_input)
        cand = length_candidates(lp, lens, self.length_beam, self.length_style, max_len=adapter.max_target_length)
        l = cand.size(1)
        tokens, free, decode = adapter.target_rows(cand.reshape(-1))
        ids = sample["id"].cpu() if "id" in sample else self._content_ids(net_input["src_tokens"])
        starts = Starts(
            tokens=tokens.cpu(),
            free=free.cpu(),
            context=torch.arange(B).repeat_interleave(l),
            keys=rng.chain_keys(self.cfg.seed, ids.repeat_interleave(l), torch.arange(l).repeat(B)),
            decode=decode.cpu(),
        )
        ev = RowEvaluator(adapter.conditional(encs), pad=self.pad, max_tokens=self.max_tokens)
        res = ChainSampler(self.cfg, ev, adapter.mask, adapter.allowed()).run(starts)
        self.totals["sentences"] += B
        self.totals["rows"] += ev.rows
        self.totals["calls"] += ev.calls
        if self._trace is not None:
            self._write_trace(res, ids, cand, l)
        if self._dump is not None:
            self._write_samples(res, ids, l)
        return [self._hypotheses(res, b, l, cand) for b in range(B)]

    def _content_ids(self, src_tokens):
        """Stand-in sentence ids for batches without any (fairseq-interactive): a checksum of
        the source tokens, so a sentence draws the same numbers wherever it appears."""
        import zlib

        rows = [r[r.ne(self.pad)].cpu().numpy().astype("int64").tobytes() for r in src_tokens]
        return torch.tensor([zlib.crc32(b) for b in rows], dtype=torch.long)

    # ------------------------------------------------------------------
    def _hypotheses(self, res, b: int, l: int, cand) -> List[dict]:
        cfg = self.cfg
        start_of_chain = res.start
        mine = (start_of_chain // l) == b
        chains = mine.nonzero().squeeze(1)
        target = ENERGIES[cfg.energy]
        if cfg.sampler == "mask-predict":
            tok = res.tokens[chains]
            score = res.extra["mask_predict_score"][chains].double()
            energy = res.energy[chains]
            pos = res.positional_scores[chains]
        else:
            if self.nbest > 1 and cfg.mh_select == "best":
                tok = res.samples[:, chains].reshape(-1, res.samples.size(-1))
                energy = res.sample_energy[:, chains].reshape(-1, 2)
                terms = res.sample_terms[:, chains].reshape(-1, res.samples.size(-1), 2)
                chain_of = chains.repeat(res.samples.size(0))
            else:
                tok, energy, terms, chain_of = res.tokens[chains], res.energy[chains], res.terms[chains], chains
            n_free = res.n_free[chain_of].clamp(min=1).double()
            e = energy[:, target]
            score = -e / n_free if self.hypothesis_score == "mean-energy" else -e
            pos = -terms[..., 1]  # log p_mlm(x_t | rest); 0 at fixed symbols
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
            out.append(
                {
                    "tokens": row,
                    "score": torch.tensor(float(score[i])),
                    "positional_scores": p.float(),
                    "alignment": None,
                    "attention": None,
                    "hypo_attn": None,
                    "steps": cfg.mh_epochs if cfg.is_chain else cfg.decoding_iterations,
                    "energy": energy[i].tolist(),
                }
            )
            if len(out) == self.nbest:
                break
        return out

    # ------------------------------------------------------------------
    def _write_trace(self, res, ids, cand, l):
        """Per-epoch records of every chain; for chain samplers also one record per start
        (``epoch`` -1, ``chain`` -1) with the warm-start state's energies and the rows it cost."""
        st = res.stats
        lengths = cand.reshape(-1)
        E = st.energy.size(0)
        lines = []
        if self.cfg.is_chain:
            for s in range(res.start_tokens.size(0)):
                b, j = divmod(s, l)
                lines.append({
                    "id": int(ids[b]), "length": int(lengths[s]), "length_rank": j, "chain": -1, "epoch": -1,
                    "record": "start", "sampler": self.cfg.sampler, "target_energy": self.cfg.energy,
                    "energy_raw": float(res.start_energy[s, 0]), "energy_local": float(res.start_energy[s, 1]),
                    "proposals": 0, "acceptance": None, "novel": None, "rows": int(res.start_rows[s]),
                    "report_rows": 0, "target_temperature": None, "block_size": None, "burn_in": True,
                    "n_free": int(res.n_free[s * self.cfg.num_chains]),
                    "text": self._text(res.start_tokens[s]),
                })
        for c in range(res.start.numel()):
            s = int(res.start[c])
            b, j = divmod(s, l)
            for e in range(E):
                prop = int(st.proposals[e, c])
                lines.append({
                    "id": int(ids[b]),
                    "length": int(lengths[s]),
                    "length_rank": j,
                    "chain": c % self.cfg.num_chains if self.cfg.is_chain else 0,
                    "epoch": e,
                    "sampler": self.cfg.sampler,
                    "target_energy": self.cfg.energy,
                    "energy_raw": float(st.energy[e, c, 0]),
                    "energy_local": float(st.energy[e, c, 1]),
                    "proposals": prop,
                    "acceptance": float(st.accepted[e, c]) / prop if prop else None,
                    "novel": float(st.novel[e, c]) / prop if prop else None,
                    "rows": int(st.rows[e, c]),
                    "report_rows": int(st.report_rows[e, c]),
                    "target_temperature": st.temperature[e],
                    "block_size": st.block_size[e],
                    "burn_in": e < self.cfg.burn_in,
                    "n_free": int(res.n_free[c]),
                })
        self._trace.write("".join(json.dumps(r) + "\n" for r in lines))
        self._trace.flush()

    def _write_samples(self, res, ids, l):
        """Every post-burn-in state of every chain (the samples), as text without specials."""
        first = self.cfg.burn_in if self.cfg.is_chain else 0
        lines = []
        for c in range(res.start.numel()):
            b, j = divmod(int(res.start[c]), l)
            for e in range(first, res.states.size(0)):
                lines.append(json.dumps({
                    "id": int(ids[b]), "length_rank": j, "chain": c % self.cfg.num_chains if self.cfg.is_chain else 0,
                    "epoch": e, "tokens": self._text(res.states[e, c]),
                }) + "\n")
        self._dump.write("".join(lines))
        self._dump.flush()

    def _text(self, row):
        return self.tgt_dict.string(row[row.ne(self.pad)], extra_symbols_to_ignore=self.symbols_to_strip_from_output)

    def close(self):
        for name in ("_trace", "_dump"):
            f = getattr(self, name)
            if f is not None:
                f.close()
                setattr(self, name, None)
