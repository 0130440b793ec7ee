"""What the Multi30k benchmarks share: the model and test sentences, and the result file.

Run from the repository root (``python benchmarks/NAME.py``), so that this module is importable.
"""

import gzip
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared"))


def load_m30k(shared: str, n: int, model_name: str = "m30k-cmlm-e33"):
    """(decoder, sources, references) of the first ``n`` test_2016_flickr sentences (de->en);
    exits with one line when the shared files are missing.  One torch thread: on shared cores
    more threads are far slower."""
    model, data = Path(shared) / "models" / model_name, Path(shared) / "data" / "multi30k"
    if not (model / "checkpoint.pt").is_file() or not (data / "test_2016_flickr.de.gz").is_file():
        sys.exit(f"error: {model} or {data} is missing: pass --shared")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.evaluation import load_decoder

    torch.set_num_threads(1)
    text = lambda lang: gzip.open(data / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8").read().splitlines()  # noqa: E731
    dec = load_decoder(model / "checkpoint.pt", model, "translation_mh", "de", "en", model / "spm.model")
    return dec, text("de")[:n], text("en")[:n]


def write_result(out: str, script: str, argv, title: str, setting: str, body: str) -> None:
    """Writes (atomically) and prints a result file: title, setting, the exact command, body."""
    import torch

    from fairseq_mh.textio import atomic_write

    cmd = shlex.join(["python", f"benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# {title}\n\n{setting}; 1 thread on 2 shared CPU cores, torch {torch.__version__}.\n\n"
            f"Command: `{cmd.strip()}`\n\n{body}\n")
    atomic_write(Path(out), text)
    print(text)
