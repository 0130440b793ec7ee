"""The two pieces of Hydra's internals the experiment runner cannot do without, in one place.

Written for Hydra 1.3.2 (pinned in requirements.txt); ``tests/test_hydra_compat.py`` checks
each contract below against the installed Hydra and fails loudly when one changes.  Everything
else the runner does with Hydra (``hydra.main``, the compose API, the override parser,
``HydraConfig``) is public API.

* The version-base singleton (``hydra.version.VersionBase``): the compose API sets it
  process-wide, and fairseq's own 1.1-style Hydra use in the same process breaks once it says
  >= 1.2, so ``version_base_restored`` puts the previous value back.  Hydra has no public way
  to read or reset it (``getbase`` is public, but the unset value cannot be set back through
  ``setbase``).
* The ConfigStore's ``repo`` dict: importing fairseq stores its structured configs (model,
  task, optimizer, ... groups) there, and they would show among the runner's config choices;
  Hydra has no public way to remove a stored config, so ``forget_structured_configs`` deletes
  them from the dict.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ["HYDRA_VERSION", "version_base_restored", "forget_structured_configs"]

HYDRA_VERSION = "1.3.2"


def _broken(what: str) -> RuntimeError:
    import hydra

    return RuntimeError(f"Hydra {hydra.__version__}: {what}; fairseq_mh/experiments/hydra_compat.py was written "
                        f"for Hydra {HYDRA_VERSION}: install hydra-core=={HYDRA_VERSION} (requirements.txt)")


@contextlib.contextmanager
def version_base_restored() -> Iterator[None]:
    """Runs the block (a compose call) and then gives Hydra's version base its earlier value."""
    from hydra.version import VersionBase

    singleton = VersionBase.instance()
    if not hasattr(singleton, "version_base"):
        raise _broken("VersionBase has no attribute 'version_base'")
    previous = singleton.version_base
    try:
        yield
    finally:
        VersionBase.instance().version_base = previous


def forget_structured_configs() -> None:
    """Drops every config stored in Hydra's ConfigStore but Hydra's own ('hydra' and its
    '_dummy' placeholders).  Only for the runner's own process: fairseq code in the same
    process may need them."""
    from hydra.core.config_store import ConfigStore

    repo = getattr(ConfigStore.instance(), "repo", None)
    if not isinstance(repo, dict):
        raise _broken("ConfigStore has no 'repo' dict")
    for key in [k for k in repo if k != "hydra" and not k.startswith("_dummy")]:
        del repo[key]
