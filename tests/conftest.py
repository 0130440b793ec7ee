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
