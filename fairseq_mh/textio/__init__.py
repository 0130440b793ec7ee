"""Text and files, shared by ``scripts/wmt_eval.py`` and ``fairseq_mh/experiments``.

* ``files``: reading lines (one behaviour for encodings and line ends), files and folders
  written whole or not at all, input fingerprints;
* ``tools``: finding external commands and packages, running a command, its error as one line;
* ``moses``: the one Moses + subword preprocessor (its settings explicit) and the detokenizer;
* ``bleu``: corpus BLEU, sacreBLEU's and the tokenized one.

Errors are ``fairseq_mh.core.errors.UserError``: one line that says what to fix.
"""

from .bleu import sacrebleu_score, tokenized_bleu
from .files import atomic_file, atomic_folder, atomic_write, file_stamp, read_lines, sha256, write_lines
from .moses import MosesSettings, Preprocessor, moses_detokenizer, normalise_romanian
from .tools import error_line, find_tool, require_module, run_tool

__all__ = [
    "sacrebleu_score",
    "tokenized_bleu",
    "atomic_file",
    "atomic_folder",
    "atomic_write",
    "file_stamp",
    "read_lines",
    "sha256",
    "write_lines",
    "MosesSettings",
    "Preprocessor",
    "moses_detokenizer",
    "normalise_romanian",
    "error_line",
    "find_tool",
    "require_module",
    "run_tool",
]
