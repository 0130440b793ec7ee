"""Property-based fuzzing of what a user types (issue 10, item 5): every input either works or
is refused in one line, never a traceback.

* decoding options, alone and combined, through fairseq's own parser and the checks the CLI
  runs (``validate_decoding_options``, ``--nbest``); what passes then decodes on a toy network;
* raw input lines (any bytes) through fairseq-mh-interactive's input path and the task's
  inference step on the test-made CMLM: each line is translated or skipped with a warning.
"""

import contextlib
import dataclasses
import io
import math
from datetime import timedelta

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fairseq_mh  # noqa: F401  (registers the plug-in)
from fairseq import options
from fairseq_mh.core import ConfigError, RowEvaluator, build_decoder
from fairseq_mh.errors import UserError
from fairseq_mh.options import sampler_config, validate_decoding_options
from fairseq_mh.preflight import check_nbest
from test_engine_contract import CountingNet, make_starts
from toy_models import MASK, PAD, allowed_vector

FUZZ = settings(max_examples=60, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_junk = st.sampled_from(["", "x", "1e400", "-0", "nan", "inf", "1.5", "3", "-1", "0", "  2"])
_ints = st.one_of(st.integers(-3, 6).map(str), _junk)
_floats = st.one_of(st.floats(-2, 3, allow_nan=False).map(repr), st.sampled_from(["nan", "inf", "-inf", "0", "1"]), _junk)


def _choice(*names):
    return st.one_of(st.sampled_from(names), st.sampled_from(["MH", "", "best ", "none"]))


OPTIONS = {
    "--sampler": _choice("mask-predict", "gibbs", "block-gibbs", "mh", "block-mh"),
    "--energy": _choice("raw", "local"),
    "--mh-epochs": _ints, "--burn-in": _ints, "--num-chains": _ints, "--block-size": _ints,
    "--force-accept-epochs": _ints, "--decoding-iterations": _ints, "--mask-predict-min-remask": _ints,
    "--length-beam": _ints, "--mh-max-tokens": _ints, "--nbest": _ints,
    "--proposal-temperature": _floats, "--proposal-top-p": _floats, "--target-temperature": _floats,
    "--anneal-rate": _floats, "--min-target-temperature": _floats,
    "--position-order": _choice("left-to-right", "random"), "--mh-select": _choice("best", "last"),
    "--warm-start": _choice("greedy", "mask-predict"), "--length-candidates": _choice("top", "around-argmax"),
    "--hypothesis-score": _choice("mean-energy", "energy"),
}


def _parse(argv):
    """(args, None) or (None, the one-line refusal) for a generate command line, as the CLI does."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = options.parse_args_and_arch(options.get_generation_parser(default_task="translation_mh"),
                                               input_args=argv)
        check_nbest(args.nbest)
        validate_decoding_options(args)
        return args, None
    except SystemExit as e:
        assert e.code == 2
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert len(lines) == 1 and ": error: " in lines[0], err.getvalue()
        return None, lines[0]
    except (ConfigError, UserError) as e:
        assert "\n" not in str(e) and "--" in str(e), str(e)
        return None, str(e)


def _decodes(args) -> None:
    """An accepted config runs on a toy network and gives well-formed outputs."""
    cfg = sampler_config(args)
    epochs = min(cfg.mh_epochs, 6)
    cfg = dataclasses.replace(cfg, seed=3, mh_epochs=epochs, burn_in=min(cfg.burn_in, epochs - 1), report_energy=True)
    ev = RowEvaluator(CountingNet(vocab=9, length=7, seed=4), pad=PAD, max_tokens=args.mh_max_tokens)
    res = build_decoder(cfg, ev, MASK, allowed_vector(9)).run(make_starts([7, 4], [0, 1]))
    assert res.tokens.size(0) == 2 * (cfg.num_chains if cfg.kind.is_chain else 1)
    if cfg.kind.is_chain:  # chains never propose <mask> (mask-predict argmaxes the full vocabulary, as the original)
        assert not bool(res.tokens.eq(MASK).any())
    assert bool(torch.isfinite(res.energy).all())


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=8).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTIONS[k] for k in keys})))
def test_decoding_options_work_or_are_refused_in_one_line(opts):
    argv = ["data", "--task", "translation_mh", "--path", "model.pt", "--cpu"]
    for flag, value in opts.items():
        argv += [f"{flag}={value}"]
    args, refusal = _parse(argv)
    if args is None:
        # a refusal names an option that was given (or --burn-in vs its --mh-epochs default)
        assert any(flag in refusal for flag in opts) or "--burn-in" in refusal, refusal
        return
    _decodes(args)


def test_the_fuzzed_checks_can_refuse():
    """The property above is not vacuous: these are refused, each in one line."""
    for bad in (["--proposal-top-p=nan"], ["--mh-epochs=0"], ["--sampler=MH"], ["--nbest=0"], ["--block-size=x"],
                ["--burn-in=3", "--mh-epochs=3"], ["--anneal-rate=-inf"]):
        args, refusal = _parse(["data", "--task", "translation_mh", "--path", "m.pt", *bad])
        assert args is None and bad[0].split("=")[0] in refusal, (bad, refusal)
    args, refusal = _parse(["data", "--task", "translation_mh", "--path", "m.pt", "--sampler=block-mh",
                            "--proposal-top-p=0.5"])
    assert refusal is None and math.isclose(args.proposal_top_p, 0.5)


# --- raw interactive lines ----------------------------------------------------------------

@pytest.fixture(scope="module")
def interactive_task(tiny_cmlm):
    """What fairseq-mh-interactive builds before reading input: config, task, model, generator."""
    from fairseq import checkpoint_utils, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    ckpt = str(tiny_cmlm["checkpoint"])
    args = options.parse_args_and_arch(options.get_interactive_generation_parser(), input_args=[
        str(tiny_cmlm["data"]), "--task", "translation_mh", "--path", ckpt, "--sampler", "mh", "--mh-epochs", "1",
        "--length-beam", "1", "--cpu", "--source-lang", "src", "--target-lang", "tgt", "--batch-size", "4",
        "--buffer-size", "4"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble([ckpt], task=task)
    generator = task.build_generator(models, cfg.generation)
    limit = utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in models])
    return {"cfg": cfg, "task": task, "models": models, "generator": generator, "max_positions": limit}


def _session_outcomes(it, path, mode):
    """{line number: 'translated' | 'skipped'} and the warnings, running main's loop."""
    import fairseq_cli.interactive as interactive

    from fairseq_mh.interactive_input import InputSession

    session = InputSession(interactive.make_batches, mode)
    outcome, err, start = {}, io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        for inputs in session.buffered_read(str(path), it["cfg"].interactive.buffer_size):
            for batch in session.make_batches(inputs, it["cfg"], it["task"], it["max_positions"], lambda x: x):
                sample = {"net_input": {"src_tokens": batch.src_tokens, "src_lengths": batch.src_lengths}}
                hypos = it["task"].inference_step(it["generator"], it["models"], sample)
                for i, h in zip(batch.ids.tolist(), hypos):
                    assert h and h[0]["tokens"].numel() >= 1
                    outcome[start + i] = "translated"
            start += len(inputs)
    warnings = [line for line in err.getvalue().splitlines() if line.strip()]
    return outcome, warnings, start


_word = st.sampled_from(["s1", "s7", "s19", "zz", "<mask>", "<pad>", "</s>", "\u00e9", "\u4e2d", "\t", "  "])
_text_line = st.lists(_word, max_size=12).map(lambda ws: " ".join(ws).encode())
_long_line = st.integers(1000, 1400).map(lambda n: (" ".join(["s2"] * n)).encode())
_line = st.one_of(_text_line, st.binary(max_size=40), _long_line, st.just(b"   "), st.just(b"\xff\xfe\x80"))


@FUZZ
@given(lines=st.lists(_line, min_size=1, max_size=6), mode=st.sampled_from(["replace", "skip"]))
def test_raw_lines_are_translated_or_skipped_with_one_warning(interactive_task, tmp_path_factory, lines, mode):
    path = tmp_path_factory.mktemp("input") / "in.txt"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    outcome, warnings, n = _session_outcomes(interactive_task, path, mode)
    assert n == path.read_bytes().count(b"\n")  # every line was read (embedded \r\x0b... stay in their line)
    skipped = [w for w in warnings if "skipped it" in w]
    assert len(outcome) + len(skipped) == n
    for w in warnings:
        assert ": warning: line " in w and "Traceback" not in w
    assert len(warnings) <= 2 * n  # at most a bytes warning and one more per line
