"""What both tasks share: option checks at set-up, the MH generator, model checks."""

from __future__ import annotations

import logging

from .. import data_check, empty_source, signals, weights
from ..errors import UserError
from ..options import parse_memory, validate_decoding_options

logger = logging.getLogger(__name__)
estimate_logger = logging.getLogger("fairseq_mh.estimate")


def model_arch(model_cfg) -> str:
    for key in ("_name", "arch"):
        v = getattr(model_cfg, key, None) if not isinstance(model_cfg, dict) else model_cfg.get(key)
        if v:
            return str(v)
    return "?"


def guard_embedding_sizes(model, task, arch: str = "model's") -> None:
    """Turns a dictionary/checkpoint size mismatch, or weights that do not fit the architecture,
    into one clear line at load time."""
    original = model.load_state_dict
    dicts = {"encoder.embed_tokens.weight": ("source", task.source_dictionary),
             "decoder.embed_tokens.weight": ("target", task.target_dictionary)}

    def load_state_dict(state_dict, *args, **kwargs):
        for key, (side, d) in dicts.items():
            w = state_dict.get(key)
            if w is not None and d is not None and w.size(0) != len(d):
                raise UserError(
                    f"the {side} dictionary has {len(d)} entries but the checkpoint's {key} has {w.size(0)} rows: "
                    f"binarize and decode with the model's own dict.*.txt and the task it was trained with "
                    f"(Mask-Predict checkpoints need --task translation_self, which adds <mask>)"
                )
        try:
            return original(state_dict, *args, **kwargs)
        except RuntimeError:
            # fairseq upgraded state_dict in place before torch refused it: name the tensors
            what = weights.mismatch(model.state_dict(), state_dict)
            if what is None:
                raise
            raise UserError(weights.describe(arch, what)) from None

    model.load_state_dict = load_state_dict


def check_data_dir(cfg) -> None:
    """Clear errors for a missing data folder or dictionary, before fairseq trips on them."""
    import os

    from fairseq import utils
    from fairseq.data import data_utils

    paths = utils.split_paths(cfg.data) if cfg.data else []
    if not paths or not os.path.isdir(paths[0]):
        raise UserError(f"data folder '{cfg.data}' does not exist: give the folder fairseq-preprocess wrote")
    if cfg.source_lang is None or cfg.target_lang is None:
        src, tgt = data_utils.infer_language_pair(paths[0])
        if src is None or tgt is None:
            raise UserError(f"cannot infer the language pair in '{paths[0]}': pass --source-lang and --target-lang")
        cfg.source_lang, cfg.target_lang = src, tgt
    for lang in (cfg.source_lang, cfg.target_lang):
        f = os.path.join(paths[0], f"dict.{lang}.txt")
        if not os.path.isfile(f):
            raise UserError(f"dictionary '{f}' is missing: copy the model's dict.{lang}.txt into the data folder")


def _apply_bf16(models) -> None:
    """--bf16: the model computes in bfloat16, on CPU and GPU (fairseq-generate applies only
    --fp16); the engine upcasts logits to float64 for energies and acceptance."""
    import torch

    from ..cli_parser import bf16_requested

    if bf16_requested():
        for m in models:
            m.to(torch.bfloat16)


class MHDecodingMixin:
    """Mixed into a fairseq translation task: validates options, builds the MH generator."""

    supported_archs: tuple = ()
    family_hint: str = ""
    task_name: str = ""

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        sampler_cfg = validate_decoding_options(cfg)  # the one validation, before any loading
        check_data_dir(cfg)
        task = super().setup_task(cfg, **kwargs)
        task.sampler_cfg = sampler_cfg
        return task

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        from fairseq import utils

        try:
            loaded = super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        except FileNotFoundError as e:
            raise UserError(f"{e}: binarize the '{split}' split with fairseq-preprocess (or pick --gen-subset)") from None
        paths = utils.split_paths(self.cfg.data)
        data_check.check_binarized(self, split, paths[(epoch - 1) % len(paths)])
        if getattr(self.cfg, "mh_sentences", None):  # one shard of a cost-balanced split
            from ..sentence_subset import SentenceSubset, read_sentence_ids

            full = self.datasets[split]
            self.datasets[split] = SentenceSubset(full, read_sentence_ids(self.cfg.mh_sentences, len(full)))
        return loaded

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """Empty sources get empty hypotheses; finished sentences are counted for the line an
        interrupted run prints."""
        hypos = empty_source.inference_step(super().inference_step, generator, models, sample, self.source_dictionary,
                                            self.target_dictionary, prefix_tokens=prefix_tokens,
                                            constraints=constraints)
        signals.count_finished(len(hypos))
        return hypos

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """fairseq 0.12 drops the last batch when its size is not a multiple of
        --required-batch-size-multiple (8 by default), silently skipping sentences at
        generation time; decoding must translate every sentence, so batches here may have
        any size."""
        if "required_batch_size_multiple" in kwargs:
            kwargs["required_batch_size_multiple"] = 1
        elif len(args) >= 5:
            args = (*args[:4], 1, *args[5:])
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        self.check_model(cfg)
        model = super().build_model(cfg, from_checkpoint)
        guard_embedding_sizes(model, self, model_arch(cfg))
        return model

    def check_model(self, model_cfg):
        arch = model_arch(model_cfg)
        if not any(arch == a or arch.startswith(a + "_") for a in self.supported_archs):
            raise UserError(
                f"checkpoint architecture '{arch}' is not supported by --task {self.task_name}: "
                f"it decodes {', '.join(self.supported_archs)} models{self.family_hint}"
            )

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **unused):
        """The MH generator; first the run's cost estimate (printed and exit with --mh-estimate)."""
        from ..generator import MHGenerator
        from ..progress import DecodeProgress, progress_mode
        from ..output_text import text_function

        cfg = self.cfg
        _apply_bf16(models)
        estimate = self._estimate(models[0]) if len(models) == 1 else None  # the run's first line
        if models:
            logger.info("MH decoding: the model is computing in %s on %s", next(models[0].parameters()).dtype,
                        next(models[0].parameters()).device)
        if cfg.mh_estimate:
            if estimate is None:
                raise UserError("--mh-estimate needs a binarized test set to estimate (fairseq-mh-generate DATA "
                                "--gen-subset SPLIT) and one model")
            print(estimate.line(self.sampler_cfg), flush=True)
            raise SystemExit(0)
        mode = progress_mode(cfg.no_progress_bar is True, cfg.log_format if isinstance(cfg.log_format, str) else None)
        progress = DecodeProgress(mode, float(cfg.mh_progress_interval), estimate.rows if estimate else None)
        return MHGenerator(
            self.target_dictionary,
            self.sampler_cfg,
            length_beam=cfg.length_beam,
            length_style=str(cfg.length_candidates),
            hypothesis_score=str(cfg.hypothesis_score),
            nbest=int(getattr(args, "nbest", 1) or 1),
            max_tokens=cfg.mh_max_tokens,
            batching=str(getattr(cfg, "mh_batching", "sentence")),
            max_memory=parse_memory(cfg.mh_max_memory),
            trace_path=cfg.mh_trace,
            dump_path=cfg.mh_dump_samples,
            progress=progress,
            output_text=text_function(self, self.target_dictionary),
        )

    def _estimate(self, model):
        """The cost of decoding the loaded test split, logged as the run's first line (None
        when there is no such split, as in fairseq-mh-interactive)."""
        from ..run_estimate import estimate_run

        cfg = self.cfg
        dataset = self.datasets.get(cfg.gen_subset) if isinstance(cfg.gen_subset, str) else None
        if dataset is None or len(dataset) == 0:
            return None
        model.eval()
        est = estimate_run(model, self.target_dictionary, dataset, self.sampler_cfg, cfg.length_beam,
                           str(cfg.length_candidates), cfg.mh_max_tokens, str(cfg.mh_batching))
        estimate_logger.info(est.line(self.sampler_cfg))
        return est
