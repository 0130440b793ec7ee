import json
import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]


def shared_dir():
    """../shared (data and models), or $FAIRSEQ_MH_SHARED; None when absent."""
    p = Path(os.environ.get("FAIRSEQ_MH_SHARED", REPO.parent / "shared"))
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared():
    p = shared_dir()
    if p is None:
        pytest.skip("../shared is absent (set FAIRSEQ_MH_SHARED to its path to run this test)")
    return p


def _built_once(tmp_path_factory, worker_id, name, build):
    """Builds a session fixture once per test session, also when pytest-xdist runs several
    workers (they share the session's temporary folder; a lock makes the others wait)."""
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # never reuse another session's
    folder, done = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result = build(folder)
            done.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in result.items()}))
    return {k: Path(v) if isinstance(v, str) else v for k, v in json.loads(done.read_text()).items()}


@pytest.fixture(scope="session")
def worker_id(request):
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(scope="session")
def tiny_cmlm(tmp_path_factory, worker_id):
    """A fairseq cmlm_transformer trained here for a few updates on a generated corpus."""
    from cli_helpers import train_tiny_cmlm

    return _built_once(tmp_path_factory, worker_id, "tiny_cmlm", train_tiny_cmlm)


@pytest.fixture(scope="session")
def tiny_mask_predict(tmp_path_factory, worker_id):
    """A Mask-Predict checkpoint in the original format (original keys, args Namespace,
    dictionaries without <mask>), trained here for a few hundred steps."""
    from mask_predict_fixture import make_mask_predict_model

    return _built_once(tmp_path_factory, worker_id, "tiny_mask_predict", make_mask_predict_model)
