"""``translation_mh``: MH decoding of fairseq ``cmlm_transformer`` checkpoints.

Reads the same data as fairseq's ``translation_lev`` (BOS prepended to source and target)
and adds the decoding options of ``fairseq_mh.options``.
"""

from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.translation_lev import TranslationLevenshteinConfig, TranslationLevenshteinTask

from ..options import MHDecodingConfig
from .mh_decoding import MHDecodingMixin


@dataclass
class TranslationMHConfig(TranslationLevenshteinConfig, MHDecodingConfig):
    pass


@register_task("translation_mh", dataclass=TranslationMHConfig)
class TranslationMHTask(MHDecodingMixin, TranslationLevenshteinTask):
    """fairseq CMLM checkpoints decoded by mask-predict, degenerate Gibbs or MH."""

    task_name = "translation_mh"
    supported_archs = ("cmlm_transformer",)
    family_hint = " (for original Mask-Predict checkpoints use --task translation_self)"
