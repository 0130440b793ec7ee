"""Raw text -> the text a model was trained on (Moses tokenization, subword model), and back.

One ``Preprocessor`` serves both pipelines; every setting on which they differ is a parameter
its caller states, never a default picked here:

* ``MosesSettings.aggressive_dash_splits`` (``tokenizer.perl -a``, ``a-b`` -> ``a @-@ b``):
  - ``scripts/wmt_eval.py`` passes False.  The released Mask-Predict models were trained on
    WMT14 En-De as Google's ``wmt16_en_de`` recipe prepared it (``tokenizer.perl -q -l L``, no
    ``-a``; joined dictionary of 32768 entries), not on fairseq's ``prepare-wmt14en2de.sh``
    (``-a``, 40000 BPE merges).  This is what the script always did; tests/test_textio.py
    pins it.
  - the experiment runner passes True when a model says ``tokenizer: moses``: it decodes with
    fairseq's ``--tokenizer moses``, whose encoder splits dashes (``moses_no_dash_splits``
    off), so the source must be tokenized the same way.
* ``MosesSettings.normalize_punctuation`` (Moses ``normalize-punctuation.perl`` first) and
  ``romanian`` (wmt16-scripts ``normalise-romanian.py`` + ``remove-diacritics.py``, as Lee et
  al. 2018's En-Ro data that Mask-Predict used): wmt_eval's options; the runner uses neither.
* escaping (``&apos;`` ...) is tokenizer.perl's default and fairseq's: on in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..core.errors import UserError

__all__ = ["MosesSettings", "Preprocessor", "normalise_romanian", "moses_detokenizer", "SUBWORD_MODELS"]

SUBWORD_MODELS = ("sentencepiece", "subword_nmt")


@dataclass(frozen=True)
class MosesSettings:
    """How the Moses tokenizer runs (see the module docstring for who needs which)."""

    aggressive_dash_splits: bool
    normalize_punctuation: bool = False
    escape: bool = True


def normalise_romanian(text: str) -> str:
    """wmt16-scripts preprocess/normalise-romanian.py then remove-diacritics.py (as used for
    Lee et al. 2018's WMT16 En-Ro data, which Mask-Predict used).  normalise-romanian.py only
    maps cedilla S/T to comma-below; it does not touch punctuation."""
    text = text.replace("\u015e", "\u0218").replace("\u015f", "\u0219")
    text = text.replace("\u0162", "\u021a").replace("\u0163", "\u021b")
    text = text.replace("\u0218", "S").replace("\u0219", "s")
    text = text.replace("\u021a", "T").replace("\u021b", "t")
    text = text.replace("\u0102", "A").replace("\u0103", "a")
    text = text.replace("\u00c2", "A").replace("\u00e2", "a")
    text = text.replace("\u00ce", "I").replace("\u00ee", "i")
    return text


def _load_subword(kind: str, path: Path):
    try:
        if kind == "sentencepiece":
            import sentencepiece as spm

            return spm.SentencePieceProcessor(model_file=str(path))
        from subword_nmt.apply_bpe import BPE

        with open(path, encoding="utf-8") as f:
            return BPE(f)
    except (OSError, RuntimeError, UnicodeDecodeError, ValueError, IndexError) as e:
        what = "a SentencePiece model (spm.model)" if kind == "sentencepiece" else "subword-nmt codes (learn-bpe output)"
        raise UserError(f"cannot read {kind} model '{path}' ({' '.join(str(e).split())}): give {what}") from None


class Preprocessor:
    """Raw line -> tokens the model knows: [normalize-punctuation] -> [Romanian normalisation]
    -> [Moses tokenizer, whitespace collapsed] -> [subword model, else whitespace collapsed].

    ``moses=None`` leaves the tokenization to the subword model (SentencePiece then sees the
    raw line); ``subword`` is None, "sentencepiece" or "subword_nmt" with ``subword_model``
    its model file or BPE codes."""

    def __init__(self, lang: str, *, moses: Optional[MosesSettings], romanian: bool = False,
                 subword: Optional[str] = None, subword_model: Optional[Path] = None):
        if subword is not None and subword not in SUBWORD_MODELS:
            raise UserError(f"unknown subword model '{subword}': use one of {', '.join(SUBWORD_MODELS)} or none")
        self.lang, self.moses, self.romanian, self.subword = lang, moses, romanian, subword
        self._tok = self._punct = None
        if moses is not None:
            from sacremoses import MosesPunctNormalizer, MosesTokenizer

            self._tok = MosesTokenizer(lang=lang)
            self._punct = MosesPunctNormalizer(lang=lang) if moses.normalize_punctuation else None
        self._sub = _load_subword(subword, Path(subword_model)) if subword else None

    def tokenize(self, line: str) -> str:
        """The normalisations and the Moses tokenizer (the line as it is without Moses)."""
        if self._punct is not None:
            line = self._punct.normalize(line)
        if self.romanian:
            line = normalise_romanian(line)
        if self._tok is None:
            return line
        tok = self._tok.tokenize(line, escape=self.moses.escape, return_str=True,
                                 aggressive_dash_splits=self.moses.aggressive_dash_splits)
        return " ".join(tok.split())

    def segment(self, tokenized: str) -> str:
        """The subword model's pieces, space-separated."""
        if self.subword == "sentencepiece":
            return " ".join(self._sub.encode(tokenized, out_type=str))
        if self.subword == "subword_nmt":
            return self._sub.process_line(tokenized)
        return " ".join(tokenized.split())

    def __call__(self, line: str) -> str:
        return self.segment(self.tokenize(line))


def moses_detokenizer(lang: str) -> Callable[[str], str]:
    """Moses-tokenized text (XML escapes included) -> plain text, as detokenizer.perl."""
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return lambda line: detok.detokenize(line.split(), unescape=True)
