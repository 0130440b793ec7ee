"""--mh-max-memory: groups of sentences under a budget of engine tensors, identical output."""

import pytest
import torch

import cli_helpers
from cli_helpers import parse_generate, user_error
from fairseq_mh.core import RowEvaluator, SamplerConfig, build_decoder
from fairseq_mh.core.budget import plan_groups, run_in_groups, start_bytes
from test_engine_contract import L, VOCAB, CountingNet, make_starts
from toy_models import MASK, PAD, allowed_vector


def test_groups_keep_each_context_whole_and_stay_under_the_budget():
    ctx = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    per = [10] * 8
    groups = plan_groups(ctx, per, budget=35)
    assert torch.equal(torch.cat(groups), torch.arange(8))  # every start once, in order
    for g in groups:
        assert len(set(ctx[g].tolist())) == len(g) or sum(per[i] for i in g) <= 35
        assert sum(per[i] for i in g) <= 35 or len(set(ctx[g].tolist())) == 1  # alone when oversize
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert [g.tolist() for g in plan_groups(ctx, per, budget=None)] == [list(range(8))]
    assert [g.tolist() for g in plan_groups(ctx, per, budget=5)] == [[0, 1], [2, 3, 4], [5], [6, 7]]


def _equal(a, b, path="result"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a.nan_to_num(-7.0) if a.is_floating_point() else a,
                           b.nan_to_num(-7.0) if b.is_floating_point() else b), path
    elif hasattr(a, "__dict__"):
        for k, v in vars(a).items():
            _equal(v, getattr(b, k), f"{path}.{k}")
    else:
        assert a == b, path


@pytest.mark.parametrize("sampler", ["mh", "block-gibbs", "mask-predict"])
def test_a_budgeted_decode_is_identical_to_an_unbounded_one(sampler):
    starts = make_starts([7, 5, 6, 7, 4, 6], [0, 0, 1, 2, 2, 3])
    cfg = SamplerConfig(sampler=sampler, mh_epochs=3, num_chains=3, block_size=3)

    def decode(budget):
        ev = RowEvaluator(CountingNet(vocab=VOCAB, length=L, seed=4), pad=PAD)
        dec = build_decoder(cfg, ev, MASK, allowed_vector(VOCAB))
        per = [start_bytes(cfg, L, VOCAB)] * 6
        groups = plan_groups(starts.context, per, budget)
        return run_in_groups(dec, starts, groups), len(groups), ev.rows

    whole, n_whole, rows_whole = decode(None)
    parts, n_parts, rows_parts = decode(start_bytes(cfg, L, VOCAB) * 2)
    assert n_whole == 1 and n_parts == 4
    assert rows_whole == rows_parts
    _equal(whole, parts)


def test_start_bytes_bound_what_the_engine_holds():
    cfg = SamplerConfig(sampler="mh", mh_epochs=4, num_chains=5)
    starts = make_starts([7, 6], [0, 1])
    ev = RowEvaluator(CountingNet(vocab=VOCAB, length=L, seed=4), pad=PAD)
    res = build_decoder(cfg, ev, MASK, allowed_vector(VOCAB)).run(starts)
    held = sum(t.numel() * t.element_size() for t in (res.states, res.stats.energy, res.sample_terms))
    cache = (cfg.num_chains + 1) * 2 * L * VOCAB * 8  # float64 logits of the toy net
    assert held + cache <= 2 * start_bytes(cfg, L, VOCAB, cache_itemsize=8)


def _generate(model, *extra, check=True):
    cmd = ["fairseq-mh-generate", model["data"], "--task", "translation_mh", "--path", model["checkpoint"],
           "--batch-size", "8", "--cpu", "--num-chains", "2", "--length-beam", "2", "--no-progress-bar", *extra]
    return cli_helpers.run(cmd, check=False)


def test_the_cli_decodes_identically_under_a_tiny_budget(tiny_cmlm, tmp_path):
    args = ["--sampler", "block-mh", "--mh-epochs", "2", "--block-size", "3", "--mh-batching", "sentence"]
    free = _generate(tiny_cmlm, *args, "--mh-max-memory", "none", "--mh-trace", tmp_path / "a.jsonl")
    tight = _generate(tiny_cmlm, *args, "--mh-max-memory", "1K", "--mh-trace", tmp_path / "b.jsonl")
    assert free.returncode == tight.returncode == 0, tight.stderr[-2000:]
    assert parse_generate(free.stdout)["H"] == parse_generate(tight.stdout)["H"]
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_a_bad_budget_is_refused_in_one_line(tiny_cmlm):
    p = _generate(tiny_cmlm, "--sampler", "mh", "--mh-max-memory", "lots")
    assert "--mh-max-memory must be a size" in user_error(p)
