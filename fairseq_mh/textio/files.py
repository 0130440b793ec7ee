"""Reading text lines and writing files and folders whole or not at all.

Every output of the project's pipelines (scripts/wmt_eval.py, the experiment runner, the
benchmarks, the demo) is written through ``atomic_file`` or ``atomic_folder``: the content goes
to a temporary name in the same folder, is flushed to disk (fsync) and then renamed into place,
so a crash, an error or Ctrl-C never leaves a half-written output under the final name, and
the temporary is removed.  Input fingerprints say which inputs an output was made from.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence, Union

from ..core.errors import UserError

__all__ = ["read_lines", "atomic_file", "atomic_write", "write_lines", "atomic_folder", "sha256", "file_stamp"]

PathLike = Union[str, os.PathLike]


def read_lines(path: PathLike) -> List[str]:
    """Lines of a UTF-8 text file, plain or ``.gz``, split on '\\n' only: a '\\r' before it is
    dropped, a lone '\\r' or U+2028 inside a line stays inside it (so the count is ``wc -l``'s,
    plus an unterminated last line).  Bytes that are not UTF-8 and unreadable files are a
    ``UserError`` that names the file and the byte."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"'{path}' is not UTF-8 text ({e.reason} at byte {e.start}): convert it to UTF-8") from None
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read '{path}': {e}") from None
    if not data:
        return []
    lines = data.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: PathLike, binary: bool = False) -> Iterator[IO]:
    """An open file (text UTF-8, or ``binary``) that becomes ``path`` when the block ends
    without an exception; otherwise nothing is left.  Permissions are those of a plain open()."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` whole or not at all."""
    with atomic_file(path) as f:
        f.write(text)


def write_lines(path: PathLike, lines: Sequence[str]) -> None:
    """Writes each line with a '\\n' after it, whole or not at all."""
    atomic_write(path, "".join(line + "\n" for line in lines))


def _fsync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as h:
                os.fsync(h.fileno())


@contextlib.contextmanager
def atomic_folder(final: PathLike, replace: bool = False) -> Iterator[Path]:
    """A new temporary folder beside ``final``, renamed to ``final`` when the block ends without
    an exception (its files flushed to disk first); otherwise it is removed.

    If ``final`` exists by then: with ``replace`` the new folder takes its place (the old one is
    deleted after the swap); without, the existing one is kept and the new one dropped (another
    process finished the same step first, from the same inputs)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    old: Optional[Path] = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _fsync_tree(tmp)
        if replace and final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old.tmp-"))
            os.replace(final, old / final.name)
        try:
            os.rename(tmp, final)
        except OSError:
            if old is not None:  # put the old folder back before failing
                with contextlib.suppress(OSError):
                    os.rename(old / final.name, final)
                raise
            if not final.is_dir():
                raise
        _fsync_dir(final.parent)
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes: what identifies an input exactly."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: Optional[PathLike]) -> Optional[dict]:
    """What identifies a file's version cheaply: resolved path, size, modification time."""
    if path is None:
        return None
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}
