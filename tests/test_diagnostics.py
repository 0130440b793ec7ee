"""Convergence diagnostics: ArviZ's statistics, the stuck-chain rules, the summary, the export,
and the test that matters: on an enumerable multimodal target, runs whose samples are far
from the exact target are flagged and runs that are close pass.

That test compares chains that all start from the greedy state with chains started from
exact draws of the target.  The greedy state neighbours both modes of the target (masses
0.95 and 4e-4), and the chains take tens of epochs to settle in the main one: the exact law
of a chain is 0.30 from the target in total variation after 20 epochs, 0.07 after 50.  The
distance of each run's pooled post-burn-in samples from the target is computed exactly:
the law of a pooled sample is the average over the kept epochs of the exact law of the
chain (from the engine's epoch kernel), and the sampled runs are checked to be within a
sampling bound of it (independent chains; expected TV of an empirical law plus a McDiarmid
deviation at probability DELTA).  The requirement put on the diagnostics: flag at least
90% of the far run's groups and pass at least 90% of the close run's, at R-hat threshold
RHAT_OK (1.05); the shares allowed are that level plus the Hoeffding deviation of a share over
GROUPS groups at probability DELTA.  (With 40 draws per chain, about three quarters of the
close groups are also below the strict 1.01; R-hat needs draws that are long compared with
the chains' autocorrelation, so exact-start chains on a target where they barely move
within the run are flagged as well.)
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch
import xarray

from fairseq_mh.core import ChainSampler, MHKernel, ProposalShape, RowEvaluator, SamplerConfig, Starts, rng
from fairseq_mh.core.diagnostics import (
    TAIL_PROB, CorpusSummary, GroupDiagnostics, chain_traces, diagnose, diagnose_series, summarize,
)
from fairseq_mh.core.exact import SmallSpace, target_distribution, total_variation
from fairseq_mh.core.inference_data import ENGINE, to_inference_data, write_netcdf
from toy_models import BOS, EOS, MASK, PAD, TinyNet, allowed_vector

DELTA = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rank_rhat(x):
    """Rank-normalised split R-hat of [chains, draws], after Vehtari et al. (2021), eqs. 3-4."""
    half = x.shape[1] // 2
    s = np.vstack([x[:, :half], x[:, -half:]])

    def z(a):
        r = scipy.stats.rankdata(a, method="average").reshape(a.shape)
        return scipy.stats.norm.ppf((r - 3 / 8) / (a.size + 1 / 4))

    def rhat(a):
        n = a.shape[1]
        W = a.var(1, ddof=1).mean()
        B = n * a.mean(1).var(ddof=1)
        return math.sqrt(((n - 1) / n * W + B / n) / W)

    return max(rhat(z(s)), rhat(z(np.abs(s - np.median(s)))))


def ar1(chains, draws, phi, seed):
    g = np.random.default_rng(seed)
    e = g.normal(size=(chains, draws))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


# --- the statistics ------------------------------------------------------------------------

def test_rhat_is_the_rank_normalised_split_rhat():
    g = np.random.default_rng(0)
    traces = g.normal(size=(5, 4, 60, 2))
    traces[1, :, :, 0] += np.arange(4)[:, None]  # chains that disagree
    traces[2, :, :, 1] = np.round(traces[2, :, :, 1])  # ties
    traces[3] = np.exp(traces[3])  # skewed: rank normalisation matters
    d = diagnose(traces)
    for i in range(5):
        for k in range(2):
            assert d.rhat[i, k] == pytest.approx(rank_rhat(traces[i, :, :, k]), rel=1e-12)
    assert d.rhat[1, 0] > 1.5 and d.worst_rhat[1] == d.rhat[1, 0]


def test_one_chain_is_compared_with_itself_by_halves():
    iid = np.random.default_rng(1).normal(size=(1, 1000))
    d = diagnose_series(iid)
    assert d.rhat == pytest.approx(rank_rhat(np.vstack([iid[0, :500], iid[0, 500:]])), rel=1e-12)
    assert d.rhat < 1.05 and d.chains == 1
    drift = iid + np.linspace(0, 10, 1000)
    assert diagnose_series(drift).rhat > 1.5


def test_ess_measures_autocorrelation():
    n = 4 * 2000
    iid = diagnose_series(ar1(4, 2000, 0.0, seed=2))
    sticky = diagnose_series(ar1(4, 2000, 0.9, seed=3))  # integrated autocorrelation time 19
    assert n / 2 < iid.ess_bulk < 2 * n and n / 2 < iid.ess_tail < 2 * n
    assert n / 100 < sticky.ess_bulk < n / 8 and sticky.ess_tail < n / 4


def test_vectorised_and_single_series_results_agree():
    traces = np.random.default_rng(4).normal(size=(3, 2, 30, 2))
    d = diagnose(traces)
    for i in range(3):
        for k in range(2):
            assert d.series_result(i, k) == diagnose_series(traces[i, :, :, k])


# --- chains that did not move -------------------------------------------------------------

def test_no_chain_moved_gives_infinite_rhat_and_no_ess():
    same = np.full((4, 20), 2.5)
    apart = np.repeat(np.arange(4.0)[:, None], 20, 1)
    for trace in (same, apart, np.full((1, 20), 1.0)):
        d = diagnose_series(trace)
        assert d.rhat == math.inf and d.ess_bulk == 0 and d.ess_tail == 0
        assert d.stuck_chains == trace.shape[0] and not d.moved


def test_a_stuck_chain_is_counted_and_the_others_are_diagnosed():
    g = np.random.default_rng(5)
    traces = g.normal(size=(2, 4, 50, 2))
    traces[0, 1, :, 0] = 0.3  # stuck in the first series only
    traces[1, 2] = 7.0  # stuck in both: never moved
    d = diagnose(traces)
    assert d.stuck.tolist() == [[1, 0], [1, 1]]
    assert d.never_moved.tolist() == [0, 1]
    assert np.isfinite(d.rhat).all() and (d.ess_bulk > 0).all()
    assert d.rhat[1].min() > 1.5  # a chain stuck far from the others is flagged


def test_undefined_arviz_values_become_infinite_rhat_not_nan():
    # each chain moves once, at its midpoint: the split chains are constant
    x = np.array([[0.0] * 10 + [1.0] * 10, [1.0] * 10 + [0.0] * 10])
    d = diagnose_series(x)
    assert d.stuck_chains == 0 and d.rhat == math.inf
    assert not math.isnan(d.ess_bulk) and not math.isnan(d.ess_tail)


def test_bad_traces_are_refused():
    with pytest.raises(ValueError, match="at least 4 post-burn-in draws.*--burn-in"):
        diagnose(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="at least 8"):
        diagnose(np.zeros((1, 1, 7)))
    with pytest.raises(ValueError, match="finite"):
        diagnose(np.full((1, 2, 10), math.nan))
    with pytest.raises(ValueError, match="groups, chains, draws"):
        diagnose(np.zeros((2, 10)))


# --- plumbing ------------------------------------------------------------------------------

def test_chain_traces_groups_the_chains_of_each_start():
    D, S, R, K = 3, 2, 4, 2
    d, c, k = np.meshgrid(np.arange(D), np.arange(S * R), np.arange(K), indexing="ij")
    energy = torch.tensor(1000.0 * d + 10.0 * c + k)
    t = chain_traces(energy, R)
    assert t.shape == (S, R, D, K)
    s, r, dd, kk = 1, 2, 1, 1
    assert t[s, r, dd, kk] == 1000 * dd + 10 * (s * R + r) + kk
    with pytest.raises(ValueError, match="starts"):
        chain_traces(energy, 3)


def _groups(rhat, bulk, never, chains=4):
    rhat = np.array(rhat, dtype=float)
    return GroupDiagnostics(rhat, np.array(bulk, float), np.array(bulk, float) / 2, np.zeros(rhat.shape, int),
                            np.array(never), chains, 20, ("raw", "local"))


def test_corpus_summary_counts_and_line():
    a = _groups([[1.001, 1.005], [1.02, 1.0]], [[100, 80], [50, 60]], [0, 1])
    b = _groups([[math.inf, math.inf], [1.2, 1.0]], [[0, 0], [10, 30]], [4, 0])
    s = summarize([a, b])
    assert s == CorpusSummary(groups=4, rhat_good=1, rhat_ok=2, median_ess_bulk=30.0, median_ess_tail=15.0,
                              never_moved=5, chains=16)
    assert s.line() == (
        "convergence over 4 sentence-length groups: R-hat < 1.01 in 25.0%, < 1.05 in 50.0%; "
        "median ESS bulk 30, tail 15; chains that never moved: 5 of 16"
    )
    assert summarize(a) == summarize([a])
    assert summarize([]).line() == "convergence: no chains to diagnose"


def test_traces_round_trip_through_netcdf_and_arviz_agrees(tmp_path):
    import arviz_stats

    g = np.random.default_rng(6)
    traces = g.normal(size=(3, 4, 40, 2))
    traces[1] += np.arange(4)[:, None, None]
    path = write_netcdf(traces, tmp_path / "traces.nc", labels={"sentence": [7, 7, 8], "length": [5, 6, 5]})
    dt = xarray.open_datatree(path, engine=ENGINE)
    post = dt["posterior"]
    assert post["energy_raw"].dims == ("chain", "draw", "group")
    assert np.array_equal(post["energy_local"].values, traces[..., 1].transpose(1, 2, 0))
    assert post["sentence"].values.tolist() == [7, 7, 8] and post["length"].values.tolist() == [5, 6, 5]
    d = diagnose(traces)
    rhat = arviz_stats.rhat(dt)  # the posterior node
    tail = arviz_stats.ess(dt, method="tail", prob=TAIL_PROB)
    for k, name in enumerate(("raw", "local")):
        assert rhat[f"energy_{name}"].values == pytest.approx(d.rhat[:, k], rel=1e-12)
        assert tail[f"energy_{name}"].values == pytest.approx(d.ess_tail[:, k], rel=1e-12)
    with pytest.raises(ValueError, match="3 values"):
        to_inference_data(traces, labels={"sentence": [1, 2]})


# --- far and close runs on an enumerable multimodal target ----------------------------------

VOCAB = 9
ALPHABET = (5, 6, 7, 8)
TEMPLATE = [BOS, MASK, MASK, MASK, EOS]
FREE = [False, True, True, True, False]
GROUPS, CHAINS, EPOCHS, BURN_IN = 256, 8, 50, 10
REQUIRED = 0.9  # share of far groups flagged, and of close groups passed, that is required


@pytest.fixture(scope="module")
def target():
    net = TinyNet(vocab=VOCAB, length=len(TEMPLATE), seed=28, scale=10.0)
    space = SmallSpace(net, TEMPLATE, FREE, ALPHABET, MASK)
    pi = target_distribution(space.energy[:, 0], 1.0)
    kernel = space.epoch_kernel(1, "random", ProposalShape(1.0, 1.0, allowed_vector(VOCAB)), 0, 1.0, MHKernel)
    return net, space, pi, kernel


def _local_modes(space, pi):
    neighbours = (space.codes[:, None, :] != space.codes[None, :, :]).sum(-1) == 1
    return [i for i in range(space.size) if (pi[neighbours[i]] < pi[i]).all()]


def _run(net, warm_start, num_chains, tokens):
    cfg = SamplerConfig(sampler="mh", energy="raw", mh_epochs=EPOCHS, burn_in=BURN_IN, num_chains=num_chains,
                        warm_start=warm_start, seed=3)
    S = tokens.size(0)
    starts = Starts(tokens=tokens, free=torch.tensor([FREE]).expand(S, -1).clone(),
                    context=torch.zeros(S, dtype=torch.long), keys=rng.chain_keys(cfg.seed, torch.arange(S)))
    return ChainSampler(cfg, RowEvaluator(net, pad=PAD), MASK, allowed_vector(VOCAB)).run(starts)


def _pooled_law_and_bound(start_law, kernel, n_chains):
    """Exact law of a pooled post-burn-in sample, and the sampling bound of n independent chains."""
    law, laws = start_law, []
    for epoch in range(EPOCHS):
        law = law @ kernel
        if epoch >= BURN_IN:
            laws.append(law)
    expected = np.mean([0.5 * float(torch.sqrt(q * (1 - q)).sum()) / math.sqrt(n_chains) for q in laws])
    return torch.stack(laws).mean(0), expected + math.sqrt(math.log(1 / DELTA) / (2 * n_chains))


def _check_run(space, res, pooled_law, bound):
    """TV of the pooled samples from the exact target; the run must follow its exact law."""
    states = res.samples.reshape(-1, space.states.size(1))
    emp = torch.bincount(space.index_of(states), minlength=space.size).double() / states.size(0)
    assert total_variation(emp, pooled_law) <= bound, "sampler differs from its exact law"
    return emp


def _never_moved(res):
    s = res.samples
    return int((s == s[:1]).all(-1).all(0).sum())


def test_diagnostics_flag_far_runs_and_pass_close_ones(target):
    net, space, pi, kernel = target
    assert len(_local_modes(space, pi)) >= 2, "the target should be multimodal"
    n = GROUPS * CHAINS
    far = _run(net, "greedy", CHAINS, torch.tensor([TEMPLATE] * GROUPS))
    start = torch.zeros(space.size, dtype=torch.float64)
    start[int(space.index_of(far.start_tokens[0]))] = 1.0
    far_law, far_bound = _pooled_law_and_bound(start, kernel, n)
    draws = torch.multinomial(pi, n, replacement=True, generator=torch.Generator().manual_seed(0))
    close = _run(net, "given", 1, space.states[draws])
    close_law, close_bound = _pooled_law_and_bound(pi, kernel, n)

    # exact distances: greedy-start runs are far, exact-start runs are stationary
    assert total_variation(far_law, pi) >= 0.1
    assert total_variation(close_law, pi) <= 1e-9
    far_emp = _check_run(space, far, far_law, far_bound)
    close_emp = _check_run(space, close, close_law, close_bound)
    assert total_variation(far_emp, pi) >= total_variation(far_law, pi) - far_bound >= 0.03
    assert total_variation(close_emp, pi) <= close_bound

    far_diag = diagnose(chain_traces(far.sample_energy, CHAINS))
    close_traces = chain_traces(close.sample_energy, 1).reshape(GROUPS, CHAINS, EPOCHS - BURN_IN, 2)
    close_diag = diagnose(close_traces)  # consecutive exact starts form a group
    s_far, s_close = summarize(far_diag), summarize(close_diag)
    eps = math.sqrt(math.log(1 / DELTA) / (2 * GROUPS))
    assert s_far.share(s_far.rhat_ok) <= 1 - REQUIRED + eps, s_far.line()
    assert s_close.share(s_close.rhat_ok) >= REQUIRED - eps, s_close.line()
    assert s_close.median_ess_bulk > s_far.median_ess_bulk
    # energies show exactly the chains whose states never changed
    assert s_far.never_moved == _never_moved(far) and s_close.never_moved == _never_moved(close)
    assert s_far.chains == s_close.chains == n


def test_diagnostics_need_no_fairseq():
    code = ("import sys; sys.modules['fairseq'] = None\n"
            "import fairseq_mh.core.diagnostics, fairseq_mh.core.inference_data\n"
            "assert not any(m.split('.')[0] == 'fairseq' for m in sys.modules if sys.modules[m] is not None)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": ROOT})
