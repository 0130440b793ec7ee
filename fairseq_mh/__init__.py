"""fairseq_mh: Metropolis-Hastings decoding for conditional masked language models.

``fairseq_mh.core`` is the model-agnostic sampling engine (no fairseq import).  Importing
this package also registers the fairseq plug-in (tasks ``translation_self`` and
``translation_mh``, the Mask-Predict architecture, its criterion, safe checkpoint loading)
when fairseq is installed; that is what ``--user-dir fairseq_mh`` relies on.  It also enlarges
oneDNN's primitive cache for CPU bf16 decoding (``fairseq_mh.cpu_runtime``).
"""

__version__ = "0.1.0"

import logging as _logging

from .cpu_runtime import enlarge_onednn_primitive_cache as _enlarge_onednn_primitive_cache

# before torch's first bf16 matmul, which fixes oneDNN's primitive cache (fairseq_mh/cpu_runtime.py)
_enlarge_onednn_primitive_cache()

# fairseq's import logs an INFO line about an optional speech dependency on every command
_logging.getLogger("fairseq.tasks.text_to_speech").setLevel(_logging.WARNING)

try:  # the engine works without fairseq; the plug-in needs it
    import fairseq  # noqa: F401
except ImportError:  # pragma: no cover
    pass
else:
    from .plugin import register

    register()

__all__ = ["MHTranslator"]


def __getattr__(name):
    """``MHTranslator`` (``fairseq_mh.hub``), imported on first use."""
    if name == "MHTranslator":
        from .hub import MHTranslator

        return MHTranslator
    raise AttributeError(f"module 'fairseq_mh' has no attribute {name!r}")
