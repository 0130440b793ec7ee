"""``translation_self``: the original Mask-Predict task, so its commands and checkpoints work.

Its dictionaries have a fifth special symbol, ``<mask>`` (index 4), added before the entries
of ``dict.*.txt``; its data has no BOS (source and target end with ``</s>``).
"""

from dataclasses import dataclass

from fairseq.data import Dictionary
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..options import MHDecodingConfig
from .mh_decoding import MHDecodingMixin

MASK_SYMBOL = "<mask>"


def load_mask_predict_dictionary(filename: str) -> Dictionary:
    """A Mask-Predict dictionary: <s> <pad> </s> <unk> <mask>, then the file's entries."""
    d = Dictionary()
    d.mask_index = d.add_symbol(MASK_SYMBOL)
    d.nspecial = len(d.symbols)
    d.add_from_file(filename)
    return d


@dataclass
class TranslationSelfConfig(TranslationConfig, MHDecodingConfig):
    pass


@register_task("translation_self", dataclass=TranslationSelfConfig)
class TranslationSelfTask(MHDecodingMixin, TranslationTask):
    """Original Mask-Predict checkpoints (``bert_transformer_seq2seq``) and data."""

    task_name = "translation_self"
    supported_archs = ("bert_transformer_seq2seq",)
    family_hint = " (for fairseq cmlm_transformer checkpoints use --task translation_mh)"

    @classmethod
    def load_dictionary(cls, filename):
        return load_mask_predict_dictionary(filename)

    def mask(self):
        return self.tgt_dict.mask_index
