"""MBR selection: batched scores against sacreBLEU, exact expected utilities, weights, ties, cost."""

import os
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from fairseq_mh.core.mbr import _winner, mbr_select
from fairseq_mh.core.utility import clipped_matches, make_utility

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = {"bleu": lambda: BLEU(effective_order=True), "chrf": CHRF}
UTILS = sorted(REFERENCE)

EDGE = [
    "", "a", "a .", "A man", "man a", "the the the the the", "a a a b",
    "A man in a blue shirt is standing on a ladder.", "a man in a blue shirt is standing on a ladder .",
    "Two dogs play in the snow.", "(hi) don't, ok?", "ünïcödé wörds here", "x" * 40,
]


def random_sentences(n, seed):
    rnd = random.Random(seed)
    words = "a man in the blue shirt is standing on ladder , cleaning windows . two dogs play snow".split()
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 16))) for _ in range(n)]


def reference_eu(name, samples, counts):
    """EU(h) = sum_j c_j U(h, y_j) / sum_j c_j with sacreBLEU's public sentence_score."""
    m = REFERENCE[name]()
    total = sum(counts)
    return {h: sum(c * m.sentence_score(h, [y]).score for y, c in zip(samples, counts)) / total for h in samples}


def test_clipped_matches_are_min_counts():
    a, b, c = Counter({"x": 3, "y": 1}), Counter({"x": 1, "z": 2}), Counter()
    M, totals = clipped_matches([a, b, c])
    assert M.tolist() == [[4, 1, 0], [1, 3, 0], [0, 0, 0]]
    assert totals.tolist() == [4, 3, 0]


@pytest.mark.parametrize("name", UTILS)
def test_batched_scores_equal_sacrebleu_sentence_scores(name):
    strings = EDGE + random_sentences(40, seed=1)
    U = make_utility(name).matrix(strings)
    m = REFERENCE[name]()
    ref = np.array([[m.sentence_score(h, [r]).score for r in strings] for h in strings])
    assert U.shape == (len(strings), len(strings))
    assert np.abs(U - ref).max() <= 1e-9
    assert not np.allclose(U, U.T)  # neither score is symmetric: every ordered pair is needed


@pytest.mark.parametrize("name", UTILS)
def test_expected_utilities_on_disjoint_strings_are_visit_shares(name):
    # no word or character n-gram in common: U(h, y) = 100 if h == y else 0, so EU = 100 c_h / N
    res = mbr_select(["ab cd", "ef gh", "ij kl"], [3, 2, 1], name)
    assert res.expected_utility.tolist() == pytest.approx([300 / 6, 200 / 6, 100 / 6], abs=1e-12)
    assert res.best == "ab cd" and res.index == 0 and res.utility == name


@pytest.mark.parametrize("name", UTILS)
def test_expected_utilities_equal_an_independent_computation(name):
    base = random_sentences(12, seed=2)
    rnd = random.Random(3)
    visits = [s for s in base for _ in range(rnd.randint(1, 4))]
    rnd.shuffle(visits)
    res = mbr_select(visits, utility=name)  # one entry per visit
    distinct = list(dict.fromkeys(visits))
    counts = [visits.count(s) for s in distinct]
    ref = reference_eu(name, distinct, counts)
    assert res.candidates == tuple(distinct)
    assert res.weights.tolist() == counts
    assert res.expected_utility == pytest.approx([ref[s] for s in distinct], abs=1e-9)
    top = sorted(ref.values())
    assert top[-1] - top[-2] > 1e-6, "test set has a tie; pick another seed"
    assert res.best == max(ref, key=ref.get)


@pytest.mark.parametrize("name", UTILS)
def test_visit_counts_change_the_winner(name):
    near = ["a man rides a red bike down the street", "a man rides a big red bike down the street"]
    far = "two dogs sleep"
    samples = near + [far]
    uniform = mbr_select(samples, [1, 1, 1], name)
    weighted = mbr_select(samples, [1, 1, 10], name)
    for res, counts in ((uniform, [1, 1, 1]), (weighted, [1, 1, 10])):
        ref = reference_eu(name, samples, counts)
        top = sorted(ref.values())
        assert top[-1] - top[-2] > 1e-6 and res.best == max(ref, key=ref.get)
    assert uniform.best in near and weighted.best == far


def test_ties_go_to_more_visits_then_to_the_first_string_in_order():
    cands = ("b", "c", "a")
    assert _winner(cands, np.array([1.0, 3.0, 5.0]), np.array([50.0, 50.0 + 1e-12, 40.0])) == 1
    assert _winner(cands, np.array([2.0, 2.0, 2.0]), np.array([50.0, 50.0, 50.0])) == 2
    assert _winner(cands, np.array([2.0, 2.0, 2.0]), np.array([50.0, 50.0, 49.0])) == 0


@pytest.mark.parametrize("name", UTILS)
def test_tied_samples_give_the_same_choice_in_any_order(name):
    samples = ["ij kl", "ab cd", "ef gh"]  # disjoint, equal visits: all EU equal
    picks = {mbr_select(order, [2, 2, 2], name).best for order in (samples, samples[::-1], samples[1:] + samples[:1])}
    assert picks == {"ab cd"}


@pytest.mark.parametrize("name", UTILS)
@pytest.mark.parametrize("sample,expected", [("a man on a ladder .", 100.0), ("", 0.0)])
def test_one_sample_is_selected_with_its_self_utility(name, sample, expected):
    for counts in (None, [5]):
        res = mbr_select([sample], counts, name)
        assert res.best == sample and res.candidates == (sample,)
        assert res.expected_utility.tolist() == pytest.approx([expected])


@pytest.mark.parametrize("name", UTILS)
def test_identical_samples_are_scored_once(name):
    u = make_utility(name)
    res = mbr_select(["x y z ."] * 7, utility=u)
    assert res.best == "x y z ." and res.weights.tolist() == [7.0]
    assert res.expected_utility.tolist() == pytest.approx([100.0])
    assert (u.strings_processed, u.pairs_scored) == (1, 1)


@pytest.mark.parametrize("name", UTILS)
def test_cost_is_one_score_per_ordered_pair_of_distinct_samples(name):
    distinct = list(dict.fromkeys(random_sentences(30, seed=4)))
    n = len(distinct)
    rnd = random.Random(5)
    visits = [s for s in distinct for _ in range(rnd.randint(1, 20))]
    rnd.shuffle(visits)
    u = make_utility(name)
    by_visit = mbr_select(visits, utility=u)
    assert (u.strings_processed, u.pairs_scored) == (n, n * n)
    counts = [visits.count(s) for s in by_visit.candidates]
    by_count = mbr_select(list(by_visit.candidates), counts, utility=u)
    assert (u.strings_processed, u.pairs_scored) == (2 * n, 2 * n * n)
    assert np.array_equal(by_visit.expected_utility, by_count.expected_utility)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one sample"):
        mbr_select([])
    with pytest.raises(ValueError, match="positive"):
        mbr_select(["a", "b"], [1, 0])
    with pytest.raises(ValueError, match="2 samples but 1 counts"):
        mbr_select(["a", "b"], [1])
    with pytest.raises(TypeError, match="strings"):
        mbr_select([["a"]])
    with pytest.raises(ValueError, match="--mbr-utility"):
        mbr_select(["a"], utility="ter")


def test_mbr_needs_no_fairseq():
    code = ("import sys; sys.modules['fairseq'] = None\n"
            "import fairseq_mh.core.mbr, fairseq_mh.core.utility\n"
            "assert not any(m.split('.')[0] == 'fairseq' for m in sys.modules if sys.modules[m] is not None)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": ROOT})


@pytest.mark.parametrize("name", UTILS)
def test_score_weight_adds_model_scores_and_moves_the_winner_at_the_crossover(name):
    # disjoint strings: EU = 100 c_h / N = 50, 33.3, 16.7; a model score of 1 on the second
    # string overtakes the first's 16.7-point lead once the weight passes 100/6
    samples, counts, scores = ["ab cd", "ef gh", "ij kl"], [3, 2, 1], [0.0, 1.0, 0.0]
    plain = mbr_select(samples, counts, name)
    for w, winner in ((0.0, "ab cd"), (16.0, "ab cd"), (17.0, "ef gh"), (1e6, "ef gh")):
        res = mbr_select(samples, counts, name, scores, w)
        assert res.best == winner
        assert np.array_equal(res.expected_utility, plain.expected_utility)  # EU itself is unchanged
        assert np.allclose(res.objective, plain.expected_utility + w * np.array(scores), rtol=0, atol=1e-9)


def test_repeated_strings_keep_their_best_model_score_and_bad_scores_are_refused():
    res = mbr_select(["a b", "c d", "a b"], None, "bleu", [-3.0, -1.0, -2.0], 100.0)
    assert res.candidates == ("a b", "c d")
    assert np.allclose(res.objective - res.expected_utility, [-200.0, -100.0])
    with pytest.raises(ValueError, match="2 samples but 1 model scores"):
        mbr_select(["a", "b"], None, "bleu", [1.0], 1.0)
    with pytest.raises(ValueError, match="finite"):
        mbr_select(["a", "b"], None, "bleu", [1.0, float("nan")], 1.0)
    for w in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="--mbr-score-weight must be a finite number >= 0"):
            mbr_select(["a"], None, "bleu", [0.0], w)
