"""The original Mask-Predict model (``bert_transformer_seq2seq``) as a fairseq 0.12 model.

Why this exists: released Mask-Predict checkpoints were written by a fork of fairseq 0.7.2
(facebookresearch/Mask-Predict).  Their architecture differs from fairseq's own
``cmlm_transformer`` (a LENGTH token in the encoder, BERT-style LayerNorm, erf gelu, fused
attention projections, learned positions, no embedding scaling), so loading them needs this
re-implementation.  It computes exactly what the original computes at inference, and its
parameter names are exactly the original state-dict keys, so a checkpoint's ``model`` dict
loads with ``strict=True`` and no renaming.

What the original computes (read off ``fairseq/models/bert_seq2seq.py`` there):

* token embeddings are NOT scaled: the original stores ``embed_scale`` but never uses it;
* learned positions: a table of ``max_positions + padding_idx + 1`` rows; the position of a
  token is ``padding_idx + 1 + (number of non-pad tokens before it)``, pads get row
  ``padding_idx``; so left- and right-padded batches get the same positions;
* the encoder prepends a LENGTH token (row 0 of ``embed_lengths``) AFTER positions were added
  (it has no position); its final state times ``embed_lengths.weight^T`` gives the length
  logits, length 0 is set to -inf, then log-softmax.  Index = length, counting ``</s>``;
* post-norm layers, LayerNorm with eps 1e-12 inside the square root (``gamma``/``beta``),
  exact erf gelu, multi-head attention with a fused ``in_proj`` in q, k, v order;
* the decoder's self-attention is full (no causal mask) with a key padding mask, and the
  output projection is the (shared) token-embedding matrix.

fairseq's own ``MultiheadAttention``, ``LayerNorm`` and transformer layers are deliberately not
used: their ``upgrade_state_dict_named`` hooks would split ``in_proj_*`` and rename layer norms.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.models import (
    FairseqDecoder,
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    register_model,
    register_model_architecture,
)
from torch import Tensor

from ..errors import UserError
from .short_attention import attend, softmax_f32

__all__ = [
    "MaskPredictTransformerModel",
    "MaskPredictEncoder",
    "MaskPredictDecoder",
    "make_positions",
    "base_architecture",
    "big_architecture",
]


def gelu(x: Tensor) -> Tensor:
    """Exact (erf) gelu, as the original; not the tanh approximation."""
    return F.gelu(x, approximate="none")


def make_positions(tokens: Tensor, padding_idx: int) -> Tensor:
    """Positions from the non-pad mask: ``padding_idx + 1, + 2, ...``; pads get ``padding_idx``."""
    mask = tokens.ne(padding_idx).long()
    return torch.cumsum(mask, dim=1) * mask + padding_idx


class BertLayerNorm(nn.Module):
    """LayerNorm with eps inside the square root and parameters named ``gamma``/``beta``."""

    def __init__(self, dim: int, eps: float = 1e-12):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Same as F.layer_norm (biased variance, eps added to it).
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.eps)


class LearnedPositions(nn.Embedding):
    """Learned positional embedding; rows = ``max_positions + padding_idx + 1``."""

    def __init__(self, max_positions: int, dim: int, padding_idx: int, side: str):
        super().__init__(max_positions + padding_idx + 1, dim, padding_idx)
        self.max_positions = max_positions
        self.side = side

    def forward(self, tokens: Tensor) -> Tensor:  # type: ignore[override]
        if tokens.size(1) > self.max_positions:
            # Only reached for over-wide batches; the common path needs no device sync.
            longest = int(tokens.ne(self.padding_idx).sum(1).max())
            if longest > self.max_positions:
                raise UserError(
                    f"a {self.side} sequence has {longest} tokens but this model supports at most "
                    f"{self.max_positions} (max_{self.side}_positions); shorten the input or "
                    "skip it with --skip-invalid-size-inputs-valid-test"
                )
        return F.embedding(make_positions(tokens, self.padding_idx), self.weight, self.padding_idx)


class FusedMultiheadAttention(nn.Module):
    """Multi-head attention with one ``in_proj_weight`` [3d, d] (q, k, v rows) and ``out_proj``.

    Inputs are time-major [T, B, d] like fairseq 0.7; ``key_padding_mask`` is Bool [B, S],
    True at keys that must be ignored.  q is scaled by head_dim**-0.5 after the projection.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise UserError(
                f"embedding dimension {embed_dim} is not divisible by {num_heads} attention heads; "
                "check --encoder-attention-heads / --decoder-attention-heads"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def key_value(self, key: Tensor) -> Tuple[Tensor, Tensor]:
        """The keys and values [S, B, d] of ``key`` (what ``kv`` takes precomputed)."""
        d = self.embed_dim
        k, v = F.linear(key, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        return k, v

    def forward(self, query: Tensor, key: Tensor, key_padding_mask: Optional[Tensor],
                kv: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        tgt_len, bsz, d = query.shape
        if query is key and kv is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, self.in_proj_weight[:d], self.in_proj_bias[:d])
            k, v = self.key_value(key) if kv is None else kv
        q = q * self.scaling
        if k.size(1) != bsz:  # keys shared by every row (the engine's one-sentence calls)
            return self.out_proj(attend(q, k, v, key_padding_mask, self.num_heads))
        src_len = k.size(0)
        bh = bsz * self.num_heads
        q = q.contiguous().view(tgt_len, bh, self.head_dim).transpose(0, 1)
        k = k.contiguous().view(src_len, bh, self.head_dim).transpose(0, 1)
        v = v.contiguous().view(src_len, bh, self.head_dim).transpose(0, 1)

        scores = torch.bmm(q, k.transpose(1, 2)).view(bsz, self.num_heads, tgt_len, src_len)
        if key_padding_mask is not None:
            scores = scores.float().masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        probs = softmax_f32(scores).type_as(q).reshape(bh, tgt_len, src_len)
        probs = F.dropout(probs, p=self.dropout, training=self.training)
        out = torch.bmm(probs, v).transpose(0, 1).contiguous().view(tgt_len, bsz, d)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-norm encoder block; norms are ``layer_norms.0`` (attention) and ``.1`` (FFN)."""

    def __init__(self, args):
        super().__init__()
        d = args.encoder_embed_dim
        self.self_attn = FusedMultiheadAttention(d, args.encoder_attention_heads, args.attention_dropout)
        self.fc1 = nn.Linear(d, args.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(args.encoder_ffn_embed_dim, d)
        self.layer_norms = nn.ModuleList([BertLayerNorm(d) for _ in range(2)])
        self.dropout = args.dropout
        self.relu_dropout = args.relu_dropout

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        h = self.self_attn(x, x, padding_mask)
        x = self.layer_norms[0](x + F.dropout(h, p=self.dropout, training=self.training))
        h = F.dropout(gelu(self.fc1(x)), p=self.relu_dropout, training=self.training)
        h = F.dropout(self.fc2(h), p=self.dropout, training=self.training)
        return self.layer_norms[1](x + h)


class DecoderLayer(nn.Module):
    """Post-norm decoder block: full self-attention, encoder attention, FFN."""

    def __init__(self, args):
        super().__init__()
        d = args.decoder_embed_dim
        heads = args.decoder_attention_heads
        self.self_attn = FusedMultiheadAttention(d, heads, args.attention_dropout)
        self.self_attn_layer_norm = BertLayerNorm(d)
        self.encoder_attn = FusedMultiheadAttention(d, heads, args.attention_dropout)
        self.encoder_attn_layer_norm = BertLayerNorm(d)
        self.fc1 = nn.Linear(d, args.decoder_ffn_embed_dim)
        self.fc2 = nn.Linear(args.decoder_ffn_embed_dim, d)
        self.final_layer_norm = BertLayerNorm(d)
        self.dropout = args.dropout
        self.relu_dropout = args.relu_dropout

    def forward(
        self,
        x: Tensor,
        self_padding_mask: Tensor,
        encoder_out: Tensor,
        encoder_padding_mask: Optional[Tensor],
        encoder_kv: Optional[Tuple[Tensor, Tensor]] = None,
    ) -> Tensor:
        h = self.self_attn(x, x, self_padding_mask)
        x = self.self_attn_layer_norm(x + F.dropout(h, p=self.dropout, training=self.training))
        h = self.encoder_attn(x, encoder_out, encoder_padding_mask, kv=encoder_kv)
        x = self.encoder_attn_layer_norm(x + F.dropout(h, p=self.dropout, training=self.training))
        h = F.dropout(gelu(self.fc1(x)), p=self.relu_dropout, training=self.training)
        h = F.dropout(self.fc2(h), p=self.dropout, training=self.training)
        return self.final_layer_norm(x + h)


class MaskPredictEncoder(FairseqEncoder):
    """Encoder with the LENGTH token; returns time-major states and length log-probabilities."""

    def __init__(self, args, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        d = embed_tokens.embedding_dim
        self.padding_idx = embed_tokens.padding_idx
        self.max_source_positions = args.max_source_positions
        self.dropout = args.dropout
        self.embed_tokens = embed_tokens
        self.embed_positions = LearnedPositions(args.max_source_positions, d, self.padding_idx, "source")
        self.embed_lengths = nn.Embedding(args.max_target_positions, d)
        self.layers = nn.ModuleList([EncoderLayer(args) for _ in range(args.encoder_layers)])
        self.register_buffer("version", torch.Tensor([2]))

    def forward(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None, **kwargs) -> Dict[str, Tensor]:
        bsz = src_tokens.size(0)
        padding_mask = src_tokens.eq(self.padding_idx)
        x = self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        length_token = self.embed_lengths.weight[:1].to(x.dtype).unsqueeze(0).expand(bsz, 1, -1)
        x = torch.cat([length_token, x], dim=1)
        x = F.dropout(x, p=self.dropout, training=self.training).transpose(0, 1)
        mask = torch.cat([padding_mask.new_zeros(bsz, 1), padding_mask], dim=1)
        for layer in self.layers:
            x = layer(x, mask)
        length_logits = torch.matmul(x[0], self.embed_lengths.weight.transpose(0, 1)).float()
        length_logits[:, 0] = float("-inf")  # length 0 (the LENGTH token's own row) is impossible
        return {
            "encoder_out": x[1:],  # S x B x d
            "encoder_padding_mask": padding_mask,  # B x S, True at pad
            "predicted_lengths": F.log_softmax(length_logits, dim=-1),  # B x max_target_positions
        }

    def reorder_encoder_out(self, encoder_out: Dict[str, Tensor], new_order: Tensor) -> Dict[str, Tensor]:
        """Select/reorder batch rows (time-major states: dim 1; the others: dim 0)."""
        out = dict(encoder_out)
        if out.get("encoder_out") is not None:
            out["encoder_out"] = out["encoder_out"].index_select(1, new_order)
        for key in ("encoder_padding_mask", "predicted_lengths"):
            if out.get(key) is not None:
                out[key] = out[key].index_select(0, new_order)
        return out

    def max_positions(self) -> int:
        return self.max_source_positions

    def upgrade_state_dict_named(self, state_dict, name):
        return state_dict


class MaskPredictDecoder(FairseqDecoder):
    """Non-autoregressive decoder; the output projection is the token-embedding matrix."""

    def __init__(self, args, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        d = embed_tokens.embedding_dim
        self.padding_idx = embed_tokens.padding_idx
        self.max_target_positions = args.max_target_positions
        self.dropout = args.dropout
        self.share_input_output_embed = args.share_decoder_input_output_embed
        self.embed_tokens = embed_tokens
        self.embed_positions = LearnedPositions(args.max_target_positions, d, self.padding_idx, "target")
        self.layers = nn.ModuleList([DecoderLayer(args) for _ in range(args.decoder_layers)])
        if not self.share_input_output_embed:
            self.embed_out = nn.Parameter(torch.empty(len(dictionary), d))
            nn.init.normal_(self.embed_out, mean=0.0, std=0.02)
        self.register_buffer("version", torch.Tensor([2]))

    def encoder_kv(self, encoder_states: Tensor) -> List[Tuple[Tensor, Tensor]]:
        """Every layer's encoder-attention keys and values of time-major states [S, B, d]:
        computed once per sentence, they can be passed to ``extract_features`` for all its rows."""
        return [layer.encoder_attn.key_value(encoder_states) for layer in self.layers]

    def extract_features(self, prev_output_tokens: Tensor, encoder_out: Dict[str, Tensor],
                         encoder_kv: Optional[List[Tuple[Tensor, Tensor]]] = None, **kwargs) -> Tensor:
        """Final decoder states, batch-major [B, L, d]; ``encoder_kv`` (from ``encoder_kv``,
        one column per row) replaces the per-row projection of the encoder states."""
        padding_mask = prev_output_tokens.eq(self.padding_idx)
        x = self.embed_tokens(prev_output_tokens) + self.embed_positions(prev_output_tokens)
        x = F.dropout(x, p=self.dropout, training=self.training).transpose(0, 1)
        enc = encoder_out["encoder_out"]
        enc_mask = encoder_out.get("encoder_padding_mask")
        for i, layer in enumerate(self.layers):
            x = layer(x, padding_mask, enc, enc_mask, None if encoder_kv is None else encoder_kv[i])
        return x.transpose(0, 1)

    def output_layer(self, features: Tensor, **kwargs) -> Tensor:
        """Vocabulary logits for features of any leading shape [..., d]."""
        weight = self.embed_tokens.weight if self.share_input_output_embed else self.embed_out
        return F.linear(features, weight)

    def forward(self, prev_output_tokens: Tensor, encoder_out: Dict[str, Tensor], **kwargs):
        logits = self.output_layer(self.extract_features(prev_output_tokens, encoder_out))
        return logits, {"attn": None, "predicted_lengths": encoder_out["predicted_lengths"]}

    def max_positions(self) -> int:
        return self.max_target_positions

    def upgrade_state_dict_named(self, state_dict, name):
        return state_dict


def _bert_init(module: nn.Module) -> None:
    """The original's initialisation (applied after construction, as the original does)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


@register_model("bert_transformer_seq2seq")
class MaskPredictTransformerModel(FairseqEncoderDecoderModel):
    """Mask-Predict's conditional masked LM, loadable from the original checkpoints."""

    def __init__(self, args, encoder: MaskPredictEncoder, decoder: MaskPredictDecoder):
        super().__init__(encoder, decoder)
        self.args = args
        self.apply(_bert_init)

    @staticmethod
    def add_args(parser):
        """The original's model options (those that change the architecture, plus the
        ones old checkpoints store, so their saved arguments convert cleanly)."""
        parser.add_argument("--dropout", type=float, metavar="D", help="dropout probability")
        parser.add_argument("--attention-dropout", type=float, metavar="D",
                            help="dropout probability for attention weights")
        parser.add_argument("--relu-dropout", type=float, metavar="D",
                            help="dropout probability after the FFN activation")
        for side in ("encoder", "decoder"):
            parser.add_argument(f"--{side}-embed-path", type=str, metavar="STR",
                                help="unsupported (kept for old checkpoints)")
            parser.add_argument(f"--{side}-embed-dim", type=int, metavar="N", help="embedding dimension")
            parser.add_argument(f"--{side}-ffn-embed-dim", type=int, metavar="N", help="FFN dimension")
            parser.add_argument(f"--{side}-layers", type=int, metavar="N", help="number of layers")
            parser.add_argument(f"--{side}-attention-heads", type=int, metavar="N", help="attention heads")
            parser.add_argument(f"--{side}-normalize-before", action="store_true",
                                help="unsupported (the released models are post-norm)")
            parser.add_argument(f"--{side}-learned-pos", action="store_true",
                                help="ignored: positions are always learned")
            parser.add_argument(f"--{side}-embed-scale", type=float,
                                help="ignored: the original never scales embeddings")
        parser.add_argument("--no-enc-token-positional-embeddings", default=False, action="store_true",
                            help="unsupported")
        parser.add_argument("--no-dec-token-positional-embeddings", default=False, action="store_true",
                            help="unsupported")
        parser.add_argument("--share-decoder-input-output-embed", action="store_true",
                            help="share decoder input and output embeddings")
        parser.add_argument("--share-all-embeddings", action="store_true",
                            help="share encoder, decoder and output embeddings (joined dictionary)")
        parser.add_argument("--adaptive-softmax-cutoff", metavar="EXPR", help="unsupported")

    @classmethod
    def build_model(cls, args, task):
        base_architecture(args)
        if not hasattr(args, "max_source_positions") or args.max_source_positions is None:
            args.max_source_positions = 1024
        if not hasattr(args, "max_target_positions") or args.max_target_positions is None:
            args.max_target_positions = 1024
        _check_supported(args)

        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary

        def embedding(dictionary, dim):
            return nn.Embedding(len(dictionary), dim, dictionary.pad())

        if args.share_all_embeddings:
            if src_dict != tgt_dict:
                raise UserError(
                    "--share-all-embeddings needs one joined dictionary, but the source and target "
                    "dictionaries differ; use the dict.*.txt files that came with the checkpoint"
                )
            if args.encoder_embed_dim != args.decoder_embed_dim:
                raise UserError(
                    f"--share-all-embeddings needs equal encoder/decoder embedding dimensions, got "
                    f"{args.encoder_embed_dim} and {args.decoder_embed_dim}"
                )
            encoder_embed = embedding(src_dict, args.encoder_embed_dim)
            decoder_embed = encoder_embed
            args.share_decoder_input_output_embed = True
        else:
            encoder_embed = embedding(src_dict, args.encoder_embed_dim)
            decoder_embed = embedding(tgt_dict, args.decoder_embed_dim)

        encoder = MaskPredictEncoder(args, src_dict, encoder_embed)
        decoder = MaskPredictDecoder(args, tgt_dict, decoder_embed)
        return cls(args, encoder, decoder)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths)
        return self.decoder(prev_output_tokens, encoder_out)

    def upgrade_state_dict_named(self, state_dict, name):
        """No upgrade: the checkpoint's keys are already this module's names."""
        return state_dict

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """Compare names and shapes first, so a wrong dictionary or a foreign checkpoint gives a
        one-line ``UserError`` instead of torch's size-mismatch traceback."""
        self._check_state_dict(state_dict, strict)
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def _check_state_dict(self, state_dict, strict: bool) -> None:
        own = self.state_dict()
        for key, side, which in (
            ("encoder.embed_tokens.weight", "source", self.encoder.dictionary),
            ("decoder.embed_tokens.weight", "target", self.decoder.dictionary),
            ("decoder.embed_out", "target", self.decoder.dictionary),
        ):
            if key in state_dict and key in own and state_dict[key].shape[0] != own[key].shape[0]:
                rows, entries = state_dict[key].shape[0], own[key].shape[0]
                if rows == entries + 1:
                    hint = ("a Mask-Predict dictionary must be loaded with --task translation_self, "
                            "which adds <mask>")
                else:
                    hint = ("use the dict.*.txt files that came with the checkpoint (and data binarized "
                            "with them)")
                raise UserError(
                    f"the {side} dictionary has {entries} entries but the checkpoint's embeddings "
                    f"({key}) have {rows} rows: {hint}"
                )
        for key, value in state_dict.items():
            if key in own and tuple(value.shape) != tuple(own[key].shape):
                raise UserError(
                    f"checkpoint tensor {key} has shape {tuple(value.shape)} but the model built from "
                    f"its saved arguments expects {tuple(own[key].shape)}: load it through "
                    "fairseq_mh (fairseq_mh.checkpoints.install() reads the sizes from the tensors)"
                )
        if strict:
            missing = sorted(set(own) - set(state_dict))
            unexpected = sorted(set(state_dict) - set(own))
            if missing or unexpected:
                detail = "; ".join(
                    f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                    for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys
                )
                raise UserError(
                    f"the checkpoint is not an original Mask-Predict (bert_transformer_seq2seq) model "
                    f"of this shape ({detail}); for fairseq's own CMLM use --arch cmlm_transformer"
                )


def _check_supported(args) -> None:
    """Options of the original that no released model uses and this port does not implement."""
    unsupported = [
        name for name, on in (
            ("--encoder-normalize-before", args.encoder_normalize_before),
            ("--decoder-normalize-before", args.decoder_normalize_before),
            ("--no-enc-token-positional-embeddings", args.no_enc_token_positional_embeddings),
            ("--no-dec-token-positional-embeddings", args.no_dec_token_positional_embeddings),
            ("--adaptive-softmax-cutoff", args.adaptive_softmax_cutoff is not None),
            ("--encoder-embed-path", args.encoder_embed_path is not None),
            ("--decoder-embed-path", args.decoder_embed_path is not None),
            ("--decoder-output-dim != --decoder-embed-dim", args.decoder_output_dim != args.decoder_embed_dim),
        ) if on
    ]
    if unsupported:
        raise UserError(
            f"bert_transformer_seq2seq: {', '.join(unsupported)} is not supported by this port "
            "(the released Mask-Predict models use none of them)"
        )


@register_model_architecture("bert_transformer_seq2seq", "bert_transformer_seq2seq")
def base_architecture(args):
    """The original's defaults (6+6 layers, d 512, ffn 4d, d/64 heads, dropout 0.1)."""
    args.encoder_embed_path = getattr(args, "encoder_embed_path", None)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", args.encoder_embed_dim * 4)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", args.encoder_embed_dim // 64)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.encoder_learned_pos = getattr(args, "encoder_learned_pos", False)
    args.decoder_embed_path = getattr(args, "decoder_embed_path", None)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", args.encoder_attention_heads)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", False)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", False)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.relu_dropout = getattr(args, "relu_dropout", 0.0)
    args.dropout = getattr(args, "dropout", 0.1)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", None)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.share_all_embeddings = getattr(args, "share_all_embeddings", False)
    args.no_enc_token_positional_embeddings = getattr(args, "no_enc_token_positional_embeddings", False)
    args.no_dec_token_positional_embeddings = getattr(args, "no_dec_token_positional_embeddings", False)
    args.decoder_output_dim = getattr(args, "decoder_output_dim", args.decoder_embed_dim)
    args.decoder_input_dim = getattr(args, "decoder_input_dim", args.decoder_embed_dim)
    args.encoder_embed_scale = getattr(args, "encoder_embed_scale", None)
    args.decoder_embed_scale = getattr(args, "decoder_embed_scale", None)


@register_model_architecture("bert_transformer_seq2seq", "bert_transformer_seq2seq_big")
def big_architecture(args):
    """As the original: only the DECODER defaults grow (1024 / 4096 / 16 heads)."""
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 1024)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 4096)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 16)
    base_architecture(args)
