"""Bad inputs get one clear line before anything is decoded (issue 10, item 1), and --help
lists the plug-in's options (item 6)."""

import dataclasses
import json
import os
import re
import shutil

import pytest
import torch

from cli_helpers import parse_generate, run, user_error

FAST = ["--sampler", "mh", "--mh-epochs", "1", "--num-chains", "1", "--length-beam", "1", "--batch-size", "8",
        "--cpu"]


def cmlm(model, *extra, path=None, cmd="fairseq-mh-generate", check=False):
    return run([cmd, model["data"], "--task", "translation_mh", "--path", path or model["checkpoint"], *extra],
               check=check)


def edited_checkpoint(model, tmp_path, edit):
    import fairseq_mh  # noqa: F401  (allow-lists what the checkpoint pickles)

    state = torch.load(model["checkpoint"], weights_only=True)
    edit(state["model"])
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    return path


# --- weights that do not fit the architecture ---------------------------------------------

def _drop_length_predictor(weights):
    del weights["decoder.embed_length.weight"]


def _add_tensor(weights):
    weights["decoder.extra_projection.weight"] = torch.zeros(3, 3)


def _reshape_ffn(weights):
    weights["decoder.layers.0.fc1.weight"] = weights["decoder.layers.0.fc1.weight"][:-8]


@pytest.mark.parametrize("edit,needles", [
    (_drop_length_predictor, ["missing decoder.embed_length.weight", "cmlm_transformer"]),
    (_add_tensor, ["unexpected decoder.extra_projection.weight"]),
    (_reshape_ffn, ["mis-shaped decoder.layers.0.fc1.weight", "(56, 32)", "(64, 32)"]),
])
def test_weights_that_do_not_fit_the_architecture_are_named(tiny_cmlm, tmp_path, edit, needles):
    p = cmlm(tiny_cmlm, *FAST, path=edited_checkpoint(tiny_cmlm, tmp_path, edit))
    line = user_error(p)
    for needle in needles:
        assert needle in line, line
    assert "H-" not in p.stdout


# --- data binarized with another dictionary -----------------------------------------------

@pytest.fixture(scope="module")
def stock_binarized(tiny_mask_predict, tmp_path_factory):
    """The Mask-Predict test set binarized as a fairseq user would by habit: stock
    fairseq-preprocess with the model's dict.*.txt (no <mask>, so every id is off by one)."""
    m = tiny_mask_predict
    data = tmp_path_factory.mktemp("stock") / "bin"
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--srcdict", m["model_dir"] / "dict.src.txt",
         "--tgtdict", m["model_dir"] / "dict.tgt.txt", "--testpref", m["raw"] / "test", "--destdir", data,
         "--workers", "1"])
    return data


def test_stock_binarized_mask_predict_data_is_refused_with_the_right_command(tiny_mask_predict, stock_binarized):
    p = run(["fairseq-mh-generate", stock_binarized, "--task", "translation_self", "--path",
             tiny_mask_predict["checkpoint"], *FAST], check=False)
    line = user_error(p)
    assert "reserves for <mask>" in line and "off by one" in line
    assert "fairseq-mh-preprocess --task translation_self --source-lang src --target-lang tgt" in line
    assert "--testpref" in line and "H-" not in p.stdout


def test_the_preprocess_marker_settles_both_ways(tiny_mask_predict, stock_binarized, tmp_path):
    """fairseq-mh-preprocess leaves a marker; one saying 'no <mask>' is refused by
    translation_self even where the ids could not tell (a copy with the ids scan defeated)."""
    marker = json.loads((tiny_mask_predict["data"] / "fairseq_mh_preprocess.json").read_text())
    assert marker["task"] == "translation_self" and marker["mask_symbol"] is True
    data = tmp_path / "bin"
    shutil.copytree(stock_binarized, data)
    (data / "fairseq_mh_preprocess.json").write_text(json.dumps({"task": "translation", "mask_symbol": False}))
    p = run(["fairseq-mh-generate", data, "--task", "translation_self", "--path", tiny_mask_predict["checkpoint"],
             *FAST], check=False)
    assert "says it was binarized for --task translation, without <mask>" in user_error(p)


def test_ids_beyond_the_dictionary_are_refused(tiny_cmlm, tmp_path):
    """The data folder's dict.*.txt swapped for a smaller one than the data was binarized with
    (the checkpoint is then refused too, but the data check names the ids)."""
    import fairseq_mh  # noqa: F401
    from fairseq.data import Dictionary

    from fairseq_mh.data_check import check_binarized

    class Task:
        task_name = "translation_mh"
        cfg = dataclasses.make_dataclass("Cfg", ["source_lang", "target_lang"])("src", "tgt")
        source_dictionary = target_dictionary = Dictionary()  # specials only: 4 entries
        datasets = {"test": dataclasses.make_dataclass("D", ["src", "tgt"])([torch.tensor([5, 9, 2])], None)}

    with pytest.raises(fairseq_mh.errors.UserError, match="source ids go up to 9 but the source dictionary has 4"):
        check_binarized(Task(), "test", str(tmp_path))


# --- run-level options, checked before the model loads ------------------------------------

def test_nbest_zero_is_refused_up_front(tiny_cmlm, tmp_path):
    trace = tmp_path / "trace.jsonl"
    p = cmlm(tiny_cmlm, *FAST, "--nbest", "0", "--mh-trace", trace)
    assert "--nbest must be an integer >= 1 (got 0)" in user_error(p)
    assert not trace.exists()
    # checked before the checkpoint is even looked at
    assert "--nbest" in user_error(cmlm(tiny_cmlm, *FAST, "--nbest", "0", path=tmp_path / "absent.pt"))


def _output_path_cases(tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    afile = tmp_path / "a_file"
    afile.write_text("x")
    return {
        "missing folder": (tmp_path / "nope" / "t.jsonl", "does not exist"),
        "under /proc": ("/proc/fairseq_mh_trace.jsonl", "under /proc"),
        "under /sys": ("/sys/fairseq_mh_trace.jsonl", "under /sys"),
        "a directory": (folder, "is a directory"),
        "inside a file": (afile / "t.jsonl", "is not a directory"),
    }


CASES = ["missing folder", "under /proc", "under /sys", "a directory", "inside a file"]


@pytest.mark.parametrize("option", ["--mh-trace", "--mh-dump-samples"])
@pytest.mark.parametrize("case", CASES)
def test_bad_output_paths_are_refused_before_loading(tiny_cmlm, tmp_path, option, case):
    path, needle = _output_path_cases(tmp_path)[case]
    # an absent checkpoint: the output path is refused first, so before any model is loaded
    p = cmlm(tiny_cmlm, *FAST, option, path, path=tmp_path / "absent.pt")
    line = user_error(p)
    assert option in line and needle in line and "absent.pt" not in line, line


@pytest.mark.parametrize("case,needle", [("file", "is a file, not a folder"), ("proc", "under /proc")])
def test_bad_results_path_is_refused_before_loading(tiny_cmlm, tmp_path, case, needle):
    path = tmp_path / "results"
    if case == "file":
        path.write_text("x")
    else:
        path = "/proc/fairseq_mh_results"
    p = cmlm(tiny_cmlm, *FAST, "--results-path", path, path=tmp_path / "absent.pt")
    line = user_error(p)
    assert "--results-path" in line and needle in line


def test_good_output_paths_work_and_a_refused_run_leaves_none_behind(tiny_cmlm, tmp_path):
    """A missing --results-path folder is created (as fairseq does); a run refused after the
    output files were opened (here: weights that do not fit) removes the files it created."""
    results, trace = tmp_path / "new" / "results", tmp_path / "trace.jsonl"
    cmlm(tiny_cmlm, *FAST, "--results-path", results, "--mh-trace", trace, check=True)
    out = parse_generate((results / "generate-test.txt").read_text())
    assert len(out["H"]) == 23 and trace.read_text().count("\n") > 0
    results2, trace2 = tmp_path / "r2", tmp_path / "trace2.jsonl"
    bad = edited_checkpoint(tiny_cmlm, tmp_path, _drop_length_predictor)
    p = cmlm(tiny_cmlm, *FAST, "--results-path", results2, "--mh-trace", trace2, path=bad)
    assert "embed_length" in user_error(p)
    assert not (results2 / "generate-test.txt").exists() and not trace2.exists()


# --- --help -------------------------------------------------------------------------------

def _decoding_flags():
    from fairseq_mh.options import MHDecodingConfig

    return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(MHDecodingConfig) if not f.name.startswith("_")]


@pytest.mark.parametrize("cmd", [
    ["fairseq-mh-generate", "--task", "translation_mh", "--help"],
    ["fairseq-mh-interactive", "--help", "--task", "translation_self"],
    ["fairseq-generate", "--user-dir", "fairseq_mh", "--task", "translation_mh", "-h"],
])
def test_help_lists_every_decoding_option_with_its_default(cmd):
    import fairseq_mh

    here = os.path.dirname(os.path.dirname(fairseq_mh.__file__))
    p = run(cmd, cwd=here)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    text = " ".join(p.stdout.split("options:", 1)[-1].split())  # the descriptions, not the usage
    for flag in _decoding_flags():
        # the flag, its help (no other option starts in between), then its default
        assert re.search(rf" {flag} (?:(?! --[a-z]).)*?\(default: ", text), flag
    assert "--sampler {mask-predict,gibbs,block-gibbs,mh,block-mh,pt-mh,pt-block-mh} decoding algorithm" in text
    assert "per chain (default: 10)" in text  # --mh-epochs, its meaning and its default
