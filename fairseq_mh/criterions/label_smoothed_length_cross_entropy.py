"""Mask-Predict's training loss, ``label_smoothed_length_cross_entropy``.

Registered so that original checkpoints, whose saved arguments name it, convert to a fairseq
0.12 config, and so that a ``bert_transformer_seq2seq`` model could be trained here.  The loss
is the original's: label-smoothed NLL over the target positions that are not ``<pad>`` (the
original's data loader puts ``<pad>`` in the target at every position it did not mask, so
only masked tokens are scored), with ``eps / V`` smoothing weight (not ``eps / (V - 1)`` as in
fairseq's ``label_smoothed_cross_entropy``), plus the NLL of the true length (the number of
non-pad decoder input tokens) under the encoder's length prediction.
"""

import math
from dataclasses import dataclass, field

from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics


@dataclass
class LabelSmoothedLengthCrossEntropyConfig(FairseqDataclass):
    label_smoothing: float = field(
        default=0.0, metadata={"help": "epsilon for label smoothing, 0 means no label smoothing"}
    )


@register_criterion("label_smoothed_length_cross_entropy", dataclass=LabelSmoothedLengthCrossEntropyConfig)
class LabelSmoothedLengthCrossEntropyCriterion(FairseqCriterion):
    def __init__(self, task, label_smoothing: float = 0.0):
        super().__init__(task)
        self.eps = label_smoothing

    def forward(self, model, sample, reduce=True):
        """Summed loss over the batch; ``sample_size`` = number of scored target tokens."""
        if not reduce:
            raise NotImplementedError("label_smoothed_length_cross_entropy only computes summed losses")
        net_output = model(**sample["net_input"])
        loss, nll_loss, length_loss, ntokens = self.compute_loss(model, net_output, sample)
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "length_loss": length_loss.data,
            "ntokens": ntokens,
            "nsentences": sample["target"].size(0),
            "sample_size": ntokens,
        }
        return loss, ntokens, logging_output

    def compute_loss(self, model, net_output, sample):
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        lprobs = lprobs.view(-1, lprobs.size(-1))
        target = model.get_targets(sample, net_output).reshape(-1)
        scored = target.ne(self.padding_idx)
        lprobs, target = lprobs[scored], target[scored]
        nll_loss = -lprobs.gather(-1, target.unsqueeze(-1)).sum()
        smooth_loss = -lprobs.sum()
        length_target = sample["net_input"]["prev_output_tokens"].ne(self.padding_idx).sum(-1, keepdim=True)
        length_loss = -net_output[1]["predicted_lengths"].gather(-1, length_target).sum()
        eps_i = self.eps / lprobs.size(-1)
        loss = (1.0 - self.eps) * nll_loss + eps_i * smooth_loss + length_loss
        return loss, nll_loss, length_loss, int(scored.sum())

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """Per-token loss and NLL, per-sentence length loss, all in bits (as the original)."""
        total = {k: utils.item(sum(log.get(k, 0) for log in logging_outputs))
                 for k in ("loss", "nll_loss", "length_loss", "ntokens", "nsentences", "sample_size")}
        metrics.log_scalar("loss", total["loss"] / max(total["sample_size"], 1) / math.log(2),
                           total["sample_size"], round=3)
        metrics.log_scalar("nll_loss", total["nll_loss"] / max(total["ntokens"], 1) / math.log(2),
                           total["ntokens"], round=3)
        metrics.log_scalar("length_loss", total["length_loss"] / max(total["nsentences"], 1) / math.log(2),
                           total["nsentences"], round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
