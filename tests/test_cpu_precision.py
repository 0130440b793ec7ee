"""--bf16 and --fp16 on a CPU without oneDNN kernels for that precision are refused up front.

On such a CPU (AVX2 only) torch computes bf16 and fp16 matmuls with slow fallbacks: on a
2-core AVX2 EPYC MH decoded 4.4x slower in bf16 than in fp32, so the run would not fail, it
would take 4x as long (``docs/results/cpu_half_precision_avx2.md``).
``preflight.check_precision`` says so in one line before anything loads;
``FAIRSEQ_MH_ALLOW_SLOW_HALF=1`` runs it anyway.
"""

from types import SimpleNamespace

import pytest
import torch

from cli_helpers import run, user_error
from fairseq_mh import cli_parser, cpu_runtime, preflight
from fairseq_mh.errors import UserError


def _cfg(cpu=True, fp16=False):
    return SimpleNamespace(common=SimpleNamespace(cpu=cpu, fp16=fp16))


@pytest.fixture
def no_half_kernels(monkeypatch):
    """A CPU with kernels for neither bf16 nor fp16 (monkeypatched: any machine)."""
    monkeypatch.setattr(cpu_runtime, "native_half", lambda dtype: False)
    monkeypatch.delenv(preflight.ALLOW_SLOW_HALF, raising=False)
    monkeypatch.setitem(cli_parser._PARSED, "bf16", False)
    return monkeypatch


@pytest.mark.parametrize("option", ["--bf16", "--fp16"])
def test_half_precision_without_cpu_kernels_is_refused_with_the_fix(no_half_kernels, option):
    if option == "--bf16":
        no_half_kernels.setitem(cli_parser._PARSED, "bf16", True)
    with pytest.raises(UserError) as e:
        preflight.check_precision(_cfg(fp16=option == "--fp16"))
    msg = str(e.value)
    assert msg.startswith(option) and "4x slower" in msg and f"drop {option}" in msg
    assert preflight.ALLOW_SLOW_HALF + "=1" in msg


def test_fp16_refusal_points_at_bf16_where_the_cpu_has_its_kernels(no_half_kernels):
    no_half_kernels.setattr(cpu_runtime, "native_half", lambda dtype: dtype is torch.bfloat16)
    with pytest.raises(UserError, match="--bf16 has kernels on this CPU"):
        preflight.check_precision(_cfg(fp16=True))


def test_runs_that_can_go_fast_or_were_forced_are_not_refused(no_half_kernels):
    no_half_kernels.setitem(cli_parser._PARSED, "bf16", True)
    no_half_kernels.setattr(torch.cuda, "is_available", lambda: True)
    preflight.check_precision(_cfg(cpu=False, fp16=True))  # on the GPU: nothing to check
    with pytest.raises(UserError):  # --cpu on a machine with a GPU still runs on this CPU
        preflight.check_precision(_cfg(cpu=True))
    no_half_kernels.setattr(torch.cuda, "is_available", lambda: False)
    no_half_kernels.setenv(preflight.ALLOW_SLOW_HALF, "1")
    preflight.check_precision(_cfg(fp16=True))  # forced
    no_half_kernels.delenv(preflight.ALLOW_SLOW_HALF)
    no_half_kernels.setattr(cpu_runtime, "native_half", lambda dtype: True)
    preflight.check_precision(_cfg(fp16=True))  # kernels present
    no_half_kernels.setitem(cli_parser._PARSED, "bf16", False)
    no_half_kernels.setattr(cpu_runtime, "native_half", lambda dtype: False)
    preflight.check_precision(_cfg(fp16=False))  # fp32: nothing to check


def test_native_half_answers_what_this_torch_says():
    assert cpu_runtime.native_half(torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_runtime.native_half(torch.float16) == torch.ops.mkldnn._is_mkldnn_fp16_supported()


def _slow_option():
    for option, dtype in (("--bf16", torch.bfloat16), ("--fp16", torch.float16)):
        if not cpu_runtime.native_half(dtype):
            return option
    return None


def test_the_command_refuses_a_slow_precision_before_writing_anything(tiny_cmlm, tmp_path):
    option = _slow_option()
    if option is None:
        pytest.skip("this CPU has oneDNN kernels for both bf16 and fp16: nothing to refuse (the logic is tested above)")
    results, trace = tmp_path / "results", tmp_path / "trace.jsonl"
    cmd = ["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
           "--sampler", "mh", "--mh-epochs", "1", "--num-chains", "1", "--length-beam", "1", "--cpu",
           "--results-path", results, "--mh-trace", trace, option]
    line = user_error(run(cmd, check=False))
    assert option in line and "4x slower" in line, line
    assert not results.exists() and not trace.exists()
