"""The text a hypothesis is printed as, for whatever must compare outputs as the user sees them.

MBR selection (``--mh-select mbr``) scores samples on detokenized text with the same
post-processing fairseq-generate applies to its hypotheses: ``tgt_dict.string(tokens,
--post-process, extra_symbols_to_ignore=<s>, </s>)``, then ``--bpe``'s and ``--tokenizer``'s
``decode`` (fairseq_cli/generate.py, ``decode_fn``).  fairseq passes the generator only the
``generation`` options, so the plug-in's run wrapper records the run's post-processing here
(``configure``) before the generator is built.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["configure", "text_function"]

_RUN: dict = {"cfg": None}


def configure(cfg) -> None:
    """Records the post-processing options of the run that is starting (a fairseq cfg)."""
    _RUN["cfg"] = cfg


def text_function(task, tgt_dict, cfg=None) -> Callable:
    """tokens -> the hypothesis string fairseq-generate would print for them."""
    cfg = cfg if cfg is not None else _RUN["cfg"]
    post_process: Optional[str] = None
    tokenizer = bpe = None
    if cfg is not None:
        post_process = cfg.common_eval.post_process
        tokenizer, bpe = task.build_tokenizer(cfg.tokenizer), task.build_bpe(cfg.bpe)
    strip = {tgt_dict.bos(), tgt_dict.eos()}

    def text(tokens) -> str:
        x = tgt_dict.string(tokens[tokens.ne(tgt_dict.pad())], post_process, extra_symbols_to_ignore=strip)
        if bpe is not None:
            x = bpe.decode(x)
        if tokenizer is not None:
            x = tokenizer.decode(x)
        return x

    return text
