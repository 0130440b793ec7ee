"""fairseq-generate with --task translation_mh on a cmlm_transformer trained in the test."""

import json
import shutil

import pytest
import torch

from cli_helpers import forced_half, parse_generate, run, user_error

SAMPLERS = ["mask-predict", "gibbs", "block-gibbs", "mh", "block-mh"]
FAST = ["--mh-epochs", "2", "--num-chains", "2", "--length-beam", "2", "--batch-size", "8", "--cpu"]


def generate(model, *extra, cmd="fairseq-mh-generate", check=True, env=None):
    return run([cmd, model["data"], "--task", "translation_mh", "--path", model["checkpoint"], *extra], check=check,
               env=env)


def n_test(model):
    return len((model["raw"] / "test.src").read_text().splitlines())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_decodes_every_sentence(tiny_cmlm, sampler, tmp_path):
    trace = tmp_path / "trace.jsonl"
    p = generate(tiny_cmlm, "--sampler", sampler, *FAST, "--block-size", "3", "--mh-trace", trace)
    out = parse_generate(p.stdout)
    n = n_test(tiny_cmlm)
    assert sorted(out["H"]) == list(range(n)), "every input sentence gets a hypothesis"
    for sid in range(n):
        assert set(out["S"][sid][0].split()) <= {f"s{i}" for i in range(20)}
        score, text = out["H"][sid][0]
        float(score)
        assert "</s>" not in text
        assert len(out["P"][sid][0][0].split()) == len(text.split()) + 1  # tokens and </s>
        if sampler != "mask-predict":  # chains never propose special symbols
            assert not any(sym in text for sym in ("<s>", "<pad>", "<unk>"))
    assert out["BLEU"] is not None and "BLEU4" in out["BLEU"]
    rec = [json.loads(l) for l in trace.read_text().splitlines()]
    keys = {"id", "length", "chain", "epoch", "energy_raw", "energy_local", "acceptance", "novel", "rows"}
    assert rec and keys <= set(rec[0])
    assert {r["id"] for r in rec} == set(range(n))


def test_mask_predict_matches_fairseqs_iterative_refinement_token_for_token(tiny_cmlm):
    """Same settings as fairseq's generator (10 passes, argmax length, re-mask floor 0)."""
    common = ["--batch-size", "8", "--cpu", "--required-batch-size-multiple", "1"]  # stock fairseq drops sentences otherwise
    ref = run(["fairseq-generate", tiny_cmlm["data"], "--user-dir", _plugin_dir(), "--task", "translation_lev",
               "--path", tiny_cmlm["checkpoint"], "--iter-decode-max-iter", "9", "--iter-decode-force-max-iter",
               *common])
    ours = generate(tiny_cmlm, "--sampler", "mask-predict", "--decoding-iterations", "10", "--length-beam", "1",
                    "--length-candidates", "around-argmax", "--mask-predict-min-remask", "0", *common)
    a, b = parse_generate(ref.stdout)["H"], parse_generate(ours.stdout)["H"]
    assert sorted(a) == sorted(b)
    same = sum(a[k][0][1] == b[k][0][1] for k in a)
    assert same == len(a), f"{same}/{len(a)} identical"


def _plugin_dir():
    from pathlib import Path

    import fairseq_mh

    return Path(fairseq_mh.__file__).parent


def test_seed_fixes_output_and_batching_or_sharding_changes_nothing(tiny_cmlm):
    args = ["--sampler", "mh", "--mh-epochs", "2", "--num-chains", "2", "--length-beam", "2", "--cpu",
            "--mh-batching", "sentence"]  # the bit-identical mode
    a = parse_generate(generate(tiny_cmlm, *args, "--batch-size", "8", "--seed", "3").stdout)["H"]
    # (fairseq drops sentences when --batch-size is not a multiple of --required-batch-size-multiple)
    b = parse_generate(generate(tiny_cmlm, *args, "--batch-size", "3", "--required-batch-size-multiple", "1",
                                "--seed", "3").stdout)["H"]
    assert a == b
    shards = {}
    for k in range(2):
        part = parse_generate(generate(tiny_cmlm, *args, "--batch-size", "8", "--seed", "3",
                                       "--num-shards", "2", "--shard-id", str(k)).stdout)["H"]
        assert part and len(part) < len(a) and not set(part) & set(shards)  # a real, disjoint piece
        shards.update(part)
    assert shards == a
    c = parse_generate(generate(tiny_cmlm, *args, "--batch-size", "8", "--seed", "4").stdout)["H"]
    assert c != a


def test_nbest_returns_distinct_samples_best_first(tiny_cmlm):
    p = generate(tiny_cmlm, "--sampler", "mh", "--mh-epochs", "3", "--num-chains", "3", "--length-beam", "2",
                 "--batch-size", "8", "--cpu", "--nbest", "3", "--proposal-temperature", "2")
    H = parse_generate(p.stdout)["H"]
    for sid, hyps in H.items():
        texts = [h[1] for h in hyps]
        scores = [float(h[0]) for h in hyps]
        assert len(set(texts)) == len(texts) and 1 <= len(texts) <= 3
        assert scores == sorted(scores, reverse=True)
    assert max(len(h) for h in H.values()) == 3


def test_sacrebleu_scoring_post_processing_and_fp16(tiny_cmlm):
    # fp16 on a CPU without fp16 kernels is refused (test_cpu_precision.py): forced here, to check that it decodes
    p = generate(tiny_cmlm, "--sampler", "block-mh", *FAST, "--scoring", "sacrebleu", "--post-process", "sentencepiece",
                 "--fp16", env=forced_half(torch.float16))
    out = parse_generate(p.stdout)
    assert "BLEU" in (out["BLEU"] or "") and len(out["H"]) == n_test(tiny_cmlm)


def test_interactive_decodes_raw_lines(tiny_cmlm):
    p = run(["fairseq-mh-interactive", tiny_cmlm["data"], "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
             "--sampler", "mh", "--mh-epochs", "2", "--cpu", "--source-lang", "src", "--target-lang", "tgt"],
            input_text="s1 s2 s3\ns4 s5\n")
    hyps = [l for l in p.stdout.splitlines() if l.startswith("H-")]
    assert len(hyps) == 2


def test_plain_fairseq_generate_with_user_dir(tiny_cmlm):
    p = generate(tiny_cmlm, "--user-dir", _plugin_dir(), "--sampler", "mh", *FAST, cmd="fairseq-generate")
    assert len(parse_generate(p.stdout)["H"]) == n_test(tiny_cmlm)


# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("opts,needle", [
    (["--proposal-top-p", "1.5"], "--proposal-top-p"),
    (["--proposal-temperature", "0"], "--proposal-temperature"),
    (["--mh-epochs", "3", "--burn-in", "3"], "--burn-in"),
    (["--num-chains", "0"], "--num-chains"),
    (["--block-size", "0"], "--block-size"),
    (["--length-beam", "0"], "--length-beam"),
])
def test_invalid_option_values_are_one_line_errors(tiny_cmlm, opts, needle):
    p = generate(tiny_cmlm, "--sampler", "mh", *opts, "--cpu", check=False)
    assert needle in user_error(p)


def test_missing_and_bad_checkpoints(tiny_cmlm, tmp_path):
    p = run(["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", tmp_path / "nope.pt", "--cpu"],
            check=False)
    assert "nope.pt" in user_error(p)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint\n")
    p = run(["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", bad, "--cpu"], check=False)
    assert "bad.pt" in user_error(p)


def test_unsupported_architecture(tiny_cmlm, tmp_path):
    import fairseq_mh  # noqa: F401  (allow-lists what the checkpoint pickles)

    state = torch.load(tiny_cmlm["checkpoint"], weights_only=True)
    model_cfg = state["cfg"]["model"]  # a Namespace in checkpoints trained from the command line
    for key in ("_name", "arch"):
        setattr(model_cfg, key, "transformer")
    path = tmp_path / "transformer.pt"
    torch.save(state, path)
    p = run(["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", path, "--cpu"], check=False)
    assert "transformer" in user_error(p)


def test_dictionary_that_does_not_match_the_checkpoint(tiny_cmlm, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_cmlm["data"], data)
    for lang in ("src", "tgt"):
        lines = (data / f"dict.{lang}.txt").read_text().splitlines()
        (data / f"dict.{lang}.txt").write_text("\n".join(lines[:-1]) + "\n")
    p = run(["fairseq-mh-generate", data, "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"], "--cpu"],
            check=False)
    assert "dictionary" in user_error(p)


def test_missing_data_folder(tiny_cmlm, tmp_path):
    p = run(["fairseq-mh-generate", tmp_path / "nodata", "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
             "--cpu"], check=False)
    assert "nodata" in user_error(p)
