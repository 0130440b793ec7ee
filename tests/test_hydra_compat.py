"""The Hydra internals fairseq_mh/experiments/hydra_compat.py relies on, checked against the
installed Hydra: when an upgrade changes one, this fails and names it (the module was written
for Hydra 1.3.2, pinned in requirements.txt)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest

from fairseq_mh.experiments import hydra_compat
from fairseq_mh.experiments import run as runner

REPO = Path(__file__).resolve().parents[1]


def test_the_pinned_hydra_is_installed():
    pinned = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip().startswith("hydra-core")]
    assert pinned == [f"hydra-core=={hydra_compat.HYDRA_VERSION}"]
    assert hydra.__version__ == hydra_compat.HYDRA_VERSION, (
        f"Hydra {hydra.__version__} is installed; hydra_compat.py was written for {hydra_compat.HYDRA_VERSION}: "
        f"re-check its two contracts (this file) before changing the pin")


def test_compose_leaves_the_version_base_as_it_was():
    from hydra.version import VersionBase

    before = VersionBase.instance().version_base
    cfg = runner.compose_config(["sampler=mh_local"])
    assert cfg.sampler.sampler == "mh" and VersionBase.instance().version_base is before
    with hydra_compat.version_base_restored():
        VersionBase.instance().setbase(hydra.version._get_version("1.3"))
    assert VersionBase.instance().version_base is before


def test_forgetting_structured_configs_keeps_hydras_own():
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    saved = dict(cs.repo)
    try:
        cs.store(group="fairseq_mh_probe", name="probe", node={"x": 1})
        assert "fairseq_mh_probe" in cs.list("")
        hydra_compat.forget_structured_configs()
        assert "fairseq_mh_probe" not in cs.list("") and "hydra" in cs.list("")
    finally:
        cs.repo.clear()
        cs.repo.update(saved)


@pytest.mark.parametrize("args", [
    ["experiment=table1,table2", "seed=1,2,3"],
    ["sampler=mh_local", "decode.proposal_top_p=choice(0.5,0.9)", "+x=1", "seed=1", "seed=4,5"],
    ["experiment=smoke", "decode.num_chains=range(1,4)"],
])
def test_sweeps_expand_as_hydras_basic_sweeper_runs_them(args):
    """The runner checks every job of a sweep before the first runs: its expansion (public
    override API) must list the jobs Hydra's BasicSweeper will start, in that order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    hydras = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    assert runner.job_overrides(args, multirun=True) == hydras and len(hydras) > 1
