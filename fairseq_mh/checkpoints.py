"""Safe checkpoint loading for fairseq 0.12 with clear, one-line errors.

Why: with torch >= 2.6, ``torch.load`` is weights-only by default and refuses the
``argparse.Namespace`` (and, in original Mask-Predict files, the ``fairseq.meters`` objects)
that these checkpoints pickle.  Falling back to ``weights_only=False`` would let any file run
code on load, so instead ``install()``:

* allow-lists exactly the globals found in real files: ``argparse.Namespace`` (fairseq 0.12
  ``cmlm_transformer`` and original Mask-Predict checkpoints) and
  ``fairseq.meters.{AverageMeter,StopwatchMeter,TimeMeter}`` (original Mask-Predict
  ``extra_state["train_meters"]``; fairseq 0.12 moved them to ``fairseq.logging.meters``);
* replaces ``fairseq.checkpoint_utils.load_checkpoint_to_cpu`` (fairseq calls it through the
  module global) with a version that always loads with ``weights_only=True`` and turns every
  way a path can be wrong into a ``UserError`` naming the file and the fix;
* for original Mask-Predict checkpoints, reads the model sizes off the tensors into the saved
  arguments, so a file with unusual sizes builds the right model.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from typing import Any, Dict, List, Optional

import torch

from .errors import UserError

__all__ = ["install", "safe_globals", "load_checkpoint_to_cpu", "MASK_PREDICT_ARCH_PREFIX"]

MASK_PREDICT_ARCH_PREFIX = "bert_transformer_seq2seq"

# fairseq dictionaries always put <pad> at index 1; the original's position tables have
# max_positions + padding_idx + 1 rows.
_PAD = 1


def safe_globals() -> List[Any]:
    """The globals real checkpoints need, under the names they were pickled with."""
    import fairseq  # noqa: F401  (aliases fairseq.meters to fairseq.logging.meters)
    from fairseq.logging import meters

    return [
        argparse.Namespace,
        (meters.AverageMeter, "fairseq.meters.AverageMeter"),
        (meters.StopwatchMeter, "fairseq.meters.StopwatchMeter"),
        (meters.TimeMeter, "fairseq.meters.TimeMeter"),
    ]


def install() -> None:
    """Allow-list the globals and patch fairseq's checkpoint loader (idempotent)."""
    from fairseq import checkpoint_utils

    torch.serialization.add_safe_globals(safe_globals())  # a set inside torch: idempotent
    if not getattr(checkpoint_utils.load_checkpoint_to_cpu, "_fairseq_mh", False):
        checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
    original = checkpoint_utils.load_model_ensemble_and_task
    if not getattr(original, "_fairseq_mh", False):

        def load_model_ensemble_and_task(filenames, *args, **kwargs):
            """fairseq checks that the files exist before loading them: say it in one line."""
            plain = kwargs.get("suffix", "") in ("", None) and kwargs.get("num_shards", 1) == 1
            for f in filenames if plain else ():
                _check_path(f)
            return original(filenames, *args, **kwargs)

        load_model_ensemble_and_task._fairseq_mh = True
        checkpoint_utils.load_model_ensemble_and_task = load_model_ensemble_and_task


def load_checkpoint_to_cpu(path, arg_overrides: Optional[Dict[str, Any]] = None, load_on_all_ranks=False):
    """fairseq 0.12's ``load_checkpoint_to_cpu``, but weights-only with clear errors.

    Same result as fairseq's function (overrides applied, old ``args`` upgraded to ``cfg``);
    ``load_on_all_ranks`` is accepted for signature compatibility.
    """
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from fairseq.file_io import PathManager
    from omegaconf import OmegaConf

    local_path = PathManager.get_local_path(path)
    state = _safe_load(path, local_path)
    _check_structure(path, state)

    args = state.get("args")
    if args is not None:
        _check_registered(path, args)
    model_args = _model_args(state)
    if model_args is not None and str(getattr(model_args, "arch", "")).startswith(MASK_PREDICT_ARCH_PREFIX):
        _sizes_from_tensors(path, model_args, state["model"])

    # sizes first, so that explicit --model-overrides still win
    if args is not None and arg_overrides is not None:
        for name, value in arg_overrides.items():
            setattr(args, name, value)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides is not None:
            overwrite_args_by_name(state["cfg"], arg_overrides)
    _add_missing_training_state(state)
    return checkpoint_utils._upgrade_state_dict(state)


load_checkpoint_to_cpu._fairseq_mh = True  # type: ignore[attr-defined]


def _check_path(path) -> None:
    from fairseq.file_io import PathManager

    if PathManager.path_requires_pathmanager(str(path)):
        return
    _check_local(path, str(path))


def _check_local(path, local_path) -> None:
    if not os.path.exists(local_path):
        raise UserError(f"checkpoint {path} does not exist: check the path given to --path")
    if os.path.isdir(local_path):
        found = sorted(n for n in os.listdir(local_path) if n.endswith(".pt"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise UserError(
            f"checkpoint {path} is a directory{hint}: pass the checkpoint file itself, "
            f"e.g. {os.path.join(str(path), 'checkpoint_best.pt')}"
        )


def _safe_load(path, local_path) -> Any:
    _check_local(path, local_path)
    try:
        with open(local_path, "rb") as f:
            return torch.load(f, map_location=torch.device("cpu"), weights_only=True)
    except OSError as err:
        raise UserError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    except pickle.UnpicklingError as err:
        message = str(err)
        refused = re.search(r"GLOBAL ([\w.]+)", message)
        reason = next((line.strip() for line in message.splitlines()
                       if any(marker in line for marker in _REFUSAL_MARKERS)), None)
        if refused is None and reason is None:
            raise _not_a_checkpoint(path, err) from None  # a corrupt pickle, not a refusal
        what = f"pickles `{refused.group(1)}`" if refused else f"needs something it refuses ({reason})"
        raise UserError(
            f"checkpoint {path} was NOT loaded: it {what}; weights-only loading refuses that "
            "(pickled code could run on load) and nothing falls back to unsafe loading; if you "
            "trust its origin, re-save just its 'args' and 'model' entries with torch.save"
        ) from None
    except Exception as err:  # torch raises KeyError, RuntimeError, EOFError, ... for non-checkpoints
        raise _not_a_checkpoint(path, err) from None


# Phrases of torch's weights-only refusals (other than a refused GLOBAL).
_REFUSAL_MARKERS = ("allowlisted", "Can only ", "Only persistent_load", "must be imported to load")


def _not_a_checkpoint(path, err: Exception) -> UserError:
    message = " ".join(str(err).split())[:120]
    detail = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return UserError(
        f"{path} is not a torch checkpoint (or it is truncated): {detail}; "
        "pass the .pt file written by fairseq or Mask-Predict training"
    )


def _check_structure(path, state: Any) -> None:
    if not isinstance(state, dict) or "model" not in state:
        kind = f"a {type(state).__name__}" if not isinstance(state, dict) else "a dict"
        keys = f" with keys {', '.join(map(repr, list(state)[:4]))}" if isinstance(state, dict) else ""
        raise UserError(
            f"{path} is {kind}{keys} but has no 'model' entry: it is not a fairseq or Mask-Predict "
            "training checkpoint (a bare state dict must be wrapped as {'args': ..., 'model': ...})"
        )
    if state.get("args") is None and state.get("cfg") is None:
        raise UserError(
            f"checkpoint {path} has a 'model' entry but neither 'args' nor 'cfg': fairseq cannot tell "
            "which model to build; use the checkpoint file written by training"
        )


def _add_missing_training_state(state: Dict[str, Any]) -> None:
    """A file re-saved with only 'args'/'cfg' and 'model' lacks the training bookkeeping that
    fairseq's upgrade step indexes; give it empty bookkeeping (only training resumption uses it)."""
    if "optimizer_history" not in state and "best_loss" not in state:
        state["optimizer_history"] = [
            {"criterion_name": "", "optimizer_name": "", "lr_scheduler_state": {}, "num_updates": 0}
        ]
    if "extra_state" not in state and "epoch" not in state:
        state["extra_state"] = {}


def _check_registered(path, args: argparse.Namespace) -> None:
    """Old ``args`` are converted through fairseq's registries; a missing name would be a KeyError."""
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    for what, registry in (("task", TASK_REGISTRY), ("arch", ARCH_MODEL_REGISTRY),
                           ("criterion", CRITERION_REGISTRY)):
        name = getattr(args, what, None)
        if name is not None and name not in registry:
            raise UserError(
                f"checkpoint {path} was saved with {what} '{name}', which is not registered: run "
                "with --user-dir pointing at the fairseq_mh package"
            )


def _model_args(state: Dict[str, Any]) -> Optional[argparse.Namespace]:
    """The Namespace that will build the model: old ``args``, or a legacy ``cfg['model']``."""
    if state.get("args") is not None:
        return state["args"]
    cfg = state.get("cfg")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    return model if isinstance(model, argparse.Namespace) else None


def _sizes_from_tensors(path, args: argparse.Namespace, model: Dict[str, torch.Tensor]) -> None:
    """Set embedding/FFN sizes, layer counts, max positions and output-embedding tying from the
    tensors; attention heads stay as saved (they leave no trace in tensor shapes)."""
    try:
        enc_tokens = model["encoder.embed_tokens.weight"]
        dec_positions = model["decoder.embed_positions.weight"]
        args.encoder_embed_dim = int(enc_tokens.shape[1])
        args.decoder_embed_dim = int(dec_positions.shape[1])
        args.decoder_input_dim = args.decoder_output_dim = args.decoder_embed_dim
        args.encoder_ffn_embed_dim = int(model["encoder.layers.0.fc1.weight"].shape[0])
        args.decoder_ffn_embed_dim = int(model["decoder.layers.0.fc1.weight"].shape[0])
        args.max_source_positions = int(model["encoder.embed_positions.weight"].shape[0]) - _PAD - 1
        args.max_target_positions = int(model["encoder.embed_lengths.weight"].shape[0])
    except (KeyError, IndexError) as err:
        raise UserError(
            f"checkpoint {path} says arch '{args.arch}' but lacks the tensor {err}: it is not an "
            "original Mask-Predict model"
        ) from None
    # Sharing is structural too: no separate output matrix means input/output are tied.
    args.share_decoder_input_output_embed = "decoder.embed_out" not in model
    if getattr(args, "share_all_embeddings", None) is None:
        dec_tokens = model.get("decoder.embed_tokens.weight")
        args.share_all_embeddings = dec_tokens is not None and dec_tokens.shape == enc_tokens.shape \
            and bool(torch.equal(dec_tokens, enc_tokens))
    for side in ("encoder", "decoder"):
        layers = {int(m.group(1)) for k in model if (m := re.match(rf"{side}\.layers\.(\d+)\.", k))}
        setattr(args, f"{side}_layers", max(layers) + 1 if layers else 0)
