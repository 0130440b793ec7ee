"""Experiment runner for the paper's tables and figures (Hydra configs in ``configs/``).

Not imported by the plug-in; run it as ``python -m fairseq_mh.experiments.run experiment=table1``.
See ``fairseq_mh/experiments/README.md`` for the commands, the outputs and how each number is
formed.
"""
