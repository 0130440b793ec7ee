"""Registers the plug-in with fairseq: tasks, models, criterion, safe loading, error hook."""

from __future__ import annotations

import importlib

_registered = False

_MODULES = (
    "fairseq_mh.checkpoints",
    "fairseq_mh.models.mask_predict_transformer",
    "fairseq_mh.criterions.label_smoothed_length_cross_entropy",
    "fairseq_mh.tasks.translation_self",
    "fairseq_mh.tasks.translation_mh",
)


def register() -> None:
    """Idempotent: importing the modules runs fairseq's @register_* decorators."""
    global _registered
    if _registered:
        return
    from .errors import install_excepthook

    install_excepthook()
    for name in _MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "install"):
            module.install()
    _registered = True
