"""A checkpoint's weights that do not fit the architecture, named in one line.

Why: ``load_state_dict`` reports missing, unexpected and mis-shaped tensors as a multi-line
``RuntimeError`` traceback.  ``mismatch`` compares the tensors themselves (after fairseq's
upgrade step renamed old keys), so the message does not depend on torch's wording.
"""

from __future__ import annotations

from typing import List, Mapping, Optional

__all__ = ["mismatch", "describe"]


def _listed(keys: List[str], most: int = 4) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def mismatch(own: Mapping, given: Mapping) -> Optional[str]:
    """What differs between the model's tensors ``own`` and the checkpoint's ``given``, or None."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = sorted(k for k in set(own) & set(given)
                    if hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(own[k].shape))
    parts = []
    if missing:
        parts.append(f"missing {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected)}")
    if shapes:
        parts.append("mis-shaped " + _listed([f"{k} (checkpoint {tuple(given[k].shape)}, model "
                                              f"{tuple(own[k].shape)})" for k in shapes], most=2))
    return "; ".join(parts) or None


def describe(arch: str, what: str) -> str:
    return (f"the checkpoint's weights do not match the {arch} architecture it names: {what}; the file was "
            "edited or saved by other code: use the checkpoint exactly as training wrote it")
