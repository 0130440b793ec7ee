import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny_cmlm(tmp_path_factory):
    """A fairseq cmlm_transformer trained here for a few updates on a generated corpus."""
    from cli_helpers import train_tiny_cmlm

    return train_tiny_cmlm(tmp_path_factory.mktemp("tiny_cmlm"))


@pytest.fixture(scope="session")
def tiny_mask_predict(tmp_path_factory):
    """A Mask-Predict checkpoint in the original format (original keys, args Namespace,
    dictionaries without <mask>), trained here for a few hundred steps."""
    from mask_predict_fixture import make_mask_predict_model

    return make_mask_predict_model(tmp_path_factory.mktemp("tiny_mask_predict"))
