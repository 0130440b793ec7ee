"""Adapters: what the generator needs from a checkpoint family, behind one interface.

An adapter encodes each sentence once (alone, without padding, so its encoding does not depend
on the batch it came in; or, for shared calls, the whole batch in one padded call, equal up to
float rounding), gives the model's own length distribution, lays out target rows of a
given length (which positions hold fixed symbols, which the samplers may change), and returns
a masked conditional for the engine that reuses the sentence's encoder output for every row
and chain and projects only the selected positions onto the vocabulary.

Sequence ends (the same for every sampler, so energies are comparable):
* Mask-Predict (``translation_self``): a target of length L is L-1 tokens then ``</s>``; the
  predicted length counts ``</s>``.  ``</s>`` is fixed: never masked, never proposed and not
  a term of the energy (it is context).  The one exception, needed to reproduce the original
  algorithm token for token, is the mask-predict baseline, which re-predicts that last
  position too, as the original does (``decode`` covers all L positions).
* fairseq CMLM (``translation_mh``): ``<s>`` + L-2 tokens + ``</s>``; the predicted length
  counts both; both are fixed for every sampler, mask-predict included (as fairseq's own
  iterative-refinement decoder does).  The mask symbol is ``<unk>``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import List, Tuple

import torch

from .encoder_bank import EncoderBank, Gathered, fixed_projections
from ..cpu_runtime import bucket, builds_primitives_per_shape, project_in_buckets, rows_in_buckets
from .query_select import last_layer_at, query_index
from .short_attention import short_attention

__all__ = ["ModelAdapter", "MaskPredictAdapter", "CMLMAdapter", "adapter_for", "length_candidates"]


def length_candidates(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int, style: str, min_len: int = 2, max_len=None) -> torch.Tensor:
    """Target-length candidates [B, beam] from a length distribution.

    ``log_probs`` [B, K] over classes whose lengths are ``lengths`` [B, K].  ``top``: the
    ``beam`` most probable lengths (original Mask-Predict); ``around-argmax``: the argmax
    plus offsets ``arange(beam) - beam // 2`` (fairseq).  Lengths below ``min_len`` become
    ``min_len`` (both originals do this, duplicates included).
    """
    if style == "top":
        idx = log_probs.topk(min(beam, log_probs.size(1)), dim=1)[1]
        cand = lengths.gather(1, idx)
    elif style == "around-argmax":
        best = lengths.gather(1, log_probs.argmax(1, keepdim=True))
        cand = best + torch.arange(beam, device=best.device)[None, :] - beam // 2
    else:
        raise ValueError(f"unknown length candidate style {style!r}")
    cand = cand.clamp(min=min_len)
    if max_len is not None:
        cand = cand.clamp(max=max_len)
    return cand


class ModelAdapter:
    """Interface shared by the checkpoint families (see module docstring)."""

    def __init__(self, model, tgt_dict):
        self.model = model
        self.dict = tgt_dict
        self.pad = tgt_dict.pad()
        self.bos = tgt_dict.bos()
        self.eos = tgt_dict.eos()
        self.unk = tgt_dict.unk()
        # the model's vocabulary; fairseq-generate may grow the dictionary while scoring
        # post-processed text (encode_line(add_if_not_exist=True)), so never use len(dict)
        self.vocab_size = model.decoder.embed_tokens.weight.size(0)
        self.max_target_length = model.max_positions()[1]

    # -- to implement
    mask: int

    def _encode_one(self, src_tokens: torch.Tensor):
        """Encoder output of one sentence ([1, S] tokens, no padding)."""
        raise NotImplementedError

    def _length_one(self, enc, src_tokens) -> Tuple[torch.Tensor, torch.Tensor]:
        """(log_probs [K], lengths [K]) of one sentence."""
        raise NotImplementedError

    def _encode_batch(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor):
        """Encoder output of a padded batch [B, S] of sentences."""
        raise NotImplementedError

    def _split(self, enc, b: int, keep: torch.Tensor):
        """Sentence ``b``'s encoder output, in ``_encode_one``'s format, from a batch's ``enc``
        (``keep`` [S]: the sentence's non-padding positions)."""
        raise NotImplementedError

    def encode(self, net_input, batched: bool = False) -> List:
        """One encoder output per sentence of the batch.  By default each is computed alone,
        without padding, so that it never depends on the batch (what makes ``--mh-batching
        sentence`` bit-identical whatever the batching).  With ``batched``, one padded encoder
        call for the whole batch, split per sentence: equal up to float rounding, and one
        call instead of B (what ``--mh-batching shared`` uses)."""
        src = net_input["src_tokens"]
        if not batched or src.size(0) == 1:
            return [self._encode_one(row[row.ne(self.pad)][None, :]) for row in src]
        keep = src.ne(self.pad)
        enc = self._encode_batch(src, keep.sum(1))
        return [self._split(enc, b, keep[b]) for b in range(src.size(0))]

    def length_distribution(self, encs, net_input) -> Tuple[torch.Tensor, torch.Tensor]:
        """(log_probs [B, K], lengths [B, K]): the model's distribution over total lengths."""
        src = net_input["src_tokens"]
        pairs = [self._length_one(e, row[row.ne(self.pad)][None, :]) for e, row in zip(encs, src)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    has_bos: bool = False  # does the target start with a fixed <s>?
    decode_eos: bool = False  # does the mask-predict baseline re-predict the final position?

    def target_rows(self, lengths: torch.Tensor):
        """(tokens [S, L], free [S, L], decode [S, L]) for candidate total lengths [S]: fixed
        symbols in place, masks at the free positions, pad beyond each length."""
        S, L = lengths.numel(), int(lengths.max())
        ar = torch.arange(L, device=lengths.device)[None, :]
        inside = ar < lengths[:, None]
        last = ar == (lengths[:, None] - 1)
        tokens = torch.full((S, L), self.pad, dtype=torch.long, device=lengths.device)
        tokens[inside] = self.mask
        tokens[last] = self.eos
        free = inside & ~last
        if self.has_bos:
            tokens[:, 0] = self.bos
            free &= ar > 0
        return tokens, free, (inside if self.decode_eos else free)

    def _states(self, enc) -> torch.Tensor:
        """Time-major encoder states [S, d] of one sentence's encoder output."""
        raise NotImplementedError

    def _kv(self, states: torch.Tensor):
        """Cross-attention keys and values of every decoder layer for states [S, B, d]."""
        raise NotImplementedError

    def _features(self, tokens, g: Gathered):
        """Decoder features [R, L, d] of rows ``tokens`` attending to ``g``."""
        raise NotImplementedError

    def _project(self, features):
        return self.model.decoder.output_layer(features)

    def _attention(self):
        """A context in which the decoder's attention runs as it should for short rows
        (the family's own attention unless it has a faster equivalent)."""
        return nullcontext()

    # -- shared
    def special_symbols(self):
        return sorted({self.bos, self.pad, self.eos, self.unk, self.mask})

    def allowed(self) -> torch.Tensor:
        """Tokens the samplers may propose, on the model's device."""
        a = torch.ones(self.vocab_size, dtype=torch.bool, device=self.model.decoder.embed_tokens.weight.device)
        a[self.special_symbols()] = False
        return a

    def conditional(self, encs, cache_kv: bool = True, select_queries: bool = True, short_rows: bool = True,
                    bucket_rows: bool = True):
        """The masked conditional for the engine: rows of any sentences of the batch
        (``context`` indexes it) attend to their own sentence's encoder output, and only
        selected positions are projected.  Logits come in the model's dtype.

        With ``cache_kv`` every sentence's cross-attention keys and values are computed once
        here and shared by all its rows and chains (``EncoderBank``); without, every row
        projects them again (the reference the cached path is tested against).  With
        ``select_queries`` the last decoder layer runs only at the selected positions
        (``query_select``); without, at all of them (the reference).  With ``short_rows`` the
        decoder's attention is the family's kernel for short rows (``_attention``) and the rows
        of a one-sentence call share that sentence's tables instead of a copy each
        (``EncoderBank.gather(shared=True)``); without, the model's own attention over per-row
        copies (the reference).  Where oneDNN builds a primitive per shape (CPU bf16/fp16),
        the selected positions and projected rows are padded to recurring sizes, and with
        ``bucket_rows`` the rows of a call that mixes sentences too (``rows_in_buckets``: a
        one-sentence call's row counts recur already)."""
        bank = EncoderBank([self._states(e) for e in encs], self._kv if cache_kv else None)
        layers = self.model.decoder.layers
        select_queries = select_queries and not any(getattr(l, "cross_self_attention", False) for l in layers)
        # oneDNN (CPU bf16/fp16) builds a primitive per shape: there the selected positions'
        # counts and a mixed call's rows are rounded to recurring sizes (cpu_runtime.bucket)
        buckets = builds_primitives_per_shape(self.model.decoder.embed_tokens.weight)
        project = (lambda f: project_in_buckets(self._project, f)) if buckets else self._project

        def fn(tokens: torch.Tensor, context: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
            if buckets and bucket_rows and bool((context != context[0]).any()):
                tokens, context, select = rows_in_buckets(tokens, context, select)
            g = bank.gather(context, shared=short_rows)
            with self._attention() if short_rows else nullcontext():
                if select_queries:
                    index, valid = query_index(select, widen=bucket if buckets else None)
                    if 0 < index.size(1) < tokens.size(1):
                        with last_layer_at(layers, index):
                            feats = self._features(tokens, g)
                        return project(feats[valid])
                return project(self._features(tokens, g)[select])

        return fn


class MaskPredictAdapter(ModelAdapter):
    """Original Mask-Predict (``bert_transformer_seq2seq``): LENGTH token, no BOS, ``<mask>``=4."""

    decode_eos = True

    def __init__(self, model, tgt_dict):
        super().__init__(model, tgt_dict)
        self.mask = tgt_dict.index("<mask>")
        if self.mask == self.unk:
            raise ValueError("the target dictionary has no <mask> symbol")

    def _encode_one(self, src_tokens):
        return self.model.encoder(src_tokens, src_tokens.new_tensor([src_tokens.size(1)]))

    def _encode_batch(self, src_tokens, src_lengths):
        return self.model.encoder(src_tokens, src_lengths)

    def _split(self, enc, b, keep):
        states = enc["encoder_out"][keep, b][:, None]
        return {"encoder_out": states, "encoder_padding_mask": keep.new_zeros(1, states.size(0)),
                "predicted_lengths": enc["predicted_lengths"][b: b + 1]}

    def _length_one(self, enc, src_tokens):
        lp = enc["predicted_lengths"][0].float()
        return lp, torch.arange(lp.numel(), device=lp.device)

    def _states(self, enc):
        return enc["encoder_out"][:, 0]

    def _kv(self, states):
        return self.model.decoder.encoder_kv(states)

    def _features(self, tokens, g):
        enc = {"encoder_out": g.enc, "encoder_padding_mask": g.mask}
        return self.model.decoder.extract_features(tokens, enc, encoder_kv=g.kv)


class CMLMAdapter(ModelAdapter):
    """fairseq ``cmlm_transformer``: BOS/EOS frame the target, ``<unk>`` is the mask,
    mean-pooled ``embed_length`` predicts the total length (optionally as an offset)."""

    has_bos = True

    def __init__(self, model, tgt_dict):
        super().__init__(model, tgt_dict)
        self.mask = self.unk

    def _encode_one(self, src_tokens):
        return self.model.encoder(src_tokens, src_lengths=src_tokens.new_tensor([src_tokens.size(1)]))

    def _encode_batch(self, src_tokens, src_lengths):
        return self.model.encoder(src_tokens, src_lengths=src_lengths)

    def _split(self, enc, b, keep):
        states = enc["encoder_out"][0][keep, b][:, None]
        return {"encoder_out": [states], "encoder_padding_mask": [keep.new_zeros(1, states.size(0))]}

    def _length_one(self, enc, src_tokens):
        dec = self.model.decoder
        lp = dec.forward_length(normalize=True, encoder_out=enc)[0].float()  # [256]
        lengths = torch.arange(lp.numel(), device=lp.device)
        if dec.pred_length_offset:  # classes are offsets from the source length
            lengths = lengths - 128 + src_tokens.size(1)
        return lp, lengths

    def _states(self, enc):
        return enc["encoder_out"][0][:, 0]

    def _attentions(self):
        return [layer.encoder_attn for layer in self.model.decoder.layers]

    def _attention(self):
        # fairseq's MultiheadAttention: batched matmuls instead of the fused kernel (short_attention)
        return short_attention(self.model.decoder.layers)

    def _kv(self, states):
        return [(a.k_proj(states), a.v_proj(states)) for a in self._attentions()]

    def _features(self, tokens, g):
        enc = {"encoder_out": [g.enc], "encoder_padding_mask": [] if g.mask is None else [g.mask]}
        if g.kv is None:
            return self.model.decoder.extract_features(tokens, encoder_out=enc)[0]
        with fixed_projections(self._attentions(), g.kv):
            return self.model.decoder.extract_features(tokens, encoder_out=enc)[0]


def adapter_for(model, tgt_dict) -> ModelAdapter:
    """The adapter of a loaded model, by architecture."""
    from fairseq.models.nat import CMLMNATransformerModel

    from .mask_predict_transformer import MaskPredictTransformerModel

    if isinstance(model, MaskPredictTransformerModel):
        return MaskPredictAdapter(model, tgt_dict)
    if isinstance(model, CMLMNATransformerModel):
        return CMLMAdapter(model, tgt_dict)
    raise TypeError(f"no MH adapter for model class {type(model).__name__}")
