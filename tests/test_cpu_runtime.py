"""Importing fairseq_mh enlarges oneDNN's primitive cache, so a CPU bf16 decode's varied call
shapes are built once, not rebuilt as they fall out of a 1024-entry cache
(``fairseq_mh/cpu_runtime.py``).  Checked through oneDNN's own verbose log, not by timing."""

import os
import subprocess
import sys

import pytest

import torch

from fairseq_mh.cpu_runtime import (PRIMITIVE_CACHE_CAPACITY, bucket, builds_primitives_per_shape,
                                    project_in_buckets)

NAMES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")

# 1100 distinct bf16 matmul shapes (more than oneDNN's default 1024), twice over
SHAPES = """
import sys
import fairseq_mh, torch
w = torch.randn(8, 8, dtype=torch.bfloat16)
for p in range(2):
    print("SECOND PASS" if p else "FIRST PASS", flush=True)
    for m in range(1, 1101):
        torch.nn.functional.linear(torch.ones(m, 8, dtype=torch.bfloat16), w)
"""


def run(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in NAMES}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


def second_pass_creations(**env):
    """(cache hits, cache misses) of the primitive creations in the second pass."""
    log = run(SHAPES, ONEDNN_VERBOSE="2", **env)
    if "create:cache_" not in log:
        pytest.skip("this torch build's bf16 matmuls do not go through oneDNN (no verbose creation log)")
    second = log.split("SECOND PASS", 1)[1]
    return second.count("create:cache_hit"), second.count("create:cache_miss")


def test_the_plugin_sets_a_large_cache_unless_the_user_chose_one():
    show = "import os, fairseq_mh; print('CAP', os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'))"
    assert f"CAP {PRIMITIVE_CACHE_CAPACITY}\n" in run(show)
    assert "CAP 64\n" in run(show, ONEDNN_PRIMITIVE_CACHE_CAPACITY="64")
    assert "CAP None\n" in run(show, DNNL_PRIMITIVE_CACHE_CAPACITY="64")  # the older name is honoured


def test_the_cache_holds_every_shape_of_a_varied_bf16_workload():
    hits, misses = second_pass_creations()
    assert hits > 1000 and misses == 0, (hits, misses)
    # the check can fail: at oneDNN's default capacity the same workload rebuilds every shape
    hits, misses = second_pass_creations(ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024")
    assert hits == 0 and misses > 1000, (hits, misses)


def test_buckets_are_few_recurring_sizes_that_waste_at_most_an_eighth():
    sizes = [bucket(n) for n in range(1, 32769)]
    assert sizes[:16] == list(range(1, 17))  # small counts stay exact
    assert all(b >= n and (b - n) * 8 <= n for n, b in enumerate(sizes, 1))
    assert all(a <= b for a, b in zip(sizes, sizes[1:]))  # monotone
    assert all(bucket(b) == b for b in sizes)  # a bucket is its own bucket
    assert len(set(sizes)) == 104 and bucket(17) == 18 and bucket(1000) == 1024 and bucket(1025) == 1152


def test_projecting_in_buckets_is_the_same_product_row_for_row():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    seen = []
    project = lambda f: seen.append(f.size(0)) or linear(f)
    for n in (1, 16, 17, 100, 129):
        f = torch.randn(n, 24)
        out = project_in_buckets(project, f)
        assert out.shape == (n, 40) and seen[-1] == bucket(n)
        torch.testing.assert_close(out, linear(f), rtol=1e-6, atol=1e-6)
    assert seen[2:] == [18, 104, 144]  # padded where the count is not a bucket size


def test_only_cpu_half_precision_weights_build_a_primitive_per_shape():
    assert builds_primitives_per_shape(torch.zeros(2, 2, dtype=torch.bfloat16))
    assert builds_primitives_per_shape(torch.zeros(2, 2, dtype=torch.float16))
    assert not builds_primitives_per_shape(torch.zeros(2, 2))
    assert not builds_primitives_per_shape(torch.zeros(2, 2, dtype=torch.bfloat16, device="meta"))


def test_the_default_call_budget_is_the_devices():
    """Without --mh-max-tokens a model call holds at most 8192 target tokens on a CPU (bigger
    calls run their element-wise work out of cache) and 32768 on a GPU."""
    from fairseq_mh.cpu_runtime import call_token_budget

    assert call_token_budget(torch.device("cpu")) == 8192
    assert call_token_budget(torch.device("cuda", 0)) == call_token_budget("cuda") == 32768
