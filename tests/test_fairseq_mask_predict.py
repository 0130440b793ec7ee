"""--task translation_self: original Mask-Predict checkpoints, every sampler, exact baseline."""

import argparse
import shutil

import pytest
import torch

from cli_helpers import parse_generate, run, user_error

SAMPLERS = ["mask-predict", "gibbs", "block-gibbs", "mh", "block-mh"]


def generate(data, checkpoint, *extra, check=True):
    return run(["fairseq-mh-generate", data, "--task", "translation_self", "--path", checkpoint, "--cpu", *extra],
               check=check)


def n_lines(path):
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_decodes_a_test_made_checkpoint(tiny_mask_predict, sampler):
    m = tiny_mask_predict
    p = generate(m["data"], m["checkpoint"], "--sampler", sampler, "--mh-epochs", "2", "--num-chains", "2",
                 "--length-beam", "3", "--block-size", "3", "--batch-size", "8")
    out = parse_generate(p.stdout)
    n = n_lines(m["raw"] / "test.src")
    assert sorted(out["H"]) == list(range(n))
    for sid in range(n):
        text = out["H"][sid][0][1]
        assert "</s>" not in text
        if sampler != "mask-predict":
            assert not any(s in text for s in ("<mask>", "<unk>", "<pad>", "<s>"))
    # the model was trained to convergence on an easy task: every decoder must translate well
    bleu = float(out["BLEU"].split("BLEU4 = ")[1].split(",")[0])
    assert bleu > 60, out["BLEU"]


def _batches(task, split="test", max_sentences=16):
    task.load_dataset(split)
    itr = task.get_batch_iterator(dataset=task.dataset(split), max_sentences=max_sentences)
    return list(itr.next_epoch_itr(shuffle=False))


@torch.no_grad()
def original_mask_predict(model, sample, mask, pad, iterations=10, length_beam=5):
    """A literal transcription of the original generate_cmlm.py + strategies/mask_predict.py
    (facebookresearch/Mask-Predict @ 11c75352): padded batches, full-vocabulary argmax,
    top-l lengths (< 2 raised to 2), max(1, n) re-masking, mean log-probability choice."""
    src_tokens, src_lengths = sample["net_input"]["src_tokens"], sample["net_input"]["src_lengths"]
    bsz = src_tokens.size(0)
    enc = model.encoder(src_tokens, src_lengths)
    beam = enc["predicted_lengths"].topk(length_beam, dim=1)[1]
    beam[beam < 2] = 2
    max_len = beam.max().item()
    length_mask = torch.triu(src_tokens.new(max_len, max_len).fill_(1).long(), 1)
    length_mask = torch.stack([length_mask[beam[b] - 1] for b in range(bsz)], dim=0)
    tgt = src_tokens.new(bsz, length_beam, max_len).fill_(mask)
    tgt = ((1 - length_mask) * tgt + length_mask * pad).view(bsz * length_beam, max_len)
    enc = model.encoder.reorder_encoder_out(enc, torch.arange(bsz).repeat_interleave(length_beam))

    pad_mask = tgt.eq(pad)
    seq_lens = max_len - pad_mask.sum(1)
    token_probs, tokens = torch.softmax(model.decoder(tgt, enc)[0], -1).max(-1)
    tokens[pad_mask] = pad
    token_probs[pad_mask] = 1.0
    for counter in range(1, iterations):
        num_mask = (seq_lens.float() * (1.0 - (counter / iterations))).long()
        token_probs[pad_mask] = 1.0
        for b in range(tokens.size(0)):
            worst = token_probs[b].topk(max(1, int(num_mask[b])), largest=False, sorted=False)[1]
            tokens[b, worst] = mask
        tokens[pad_mask] = pad
        remasked = tokens.eq(mask)
        new_probs, new_tokens = torch.softmax(model.decoder(tokens, enc)[0], -1).max(-1)
        token_probs[remasked] = new_probs[remasked]
        tokens[remasked] = new_tokens[remasked]
        tokens[pad_mask] = pad
    lprobs = token_probs.log().sum(-1)
    hyps = tokens.view(bsz, length_beam, max_len)
    avg = lprobs.view(bsz, length_beam) / (1 - length_mask).sum(-1).float()
    best = avg.max(-1)[1]
    return [hyps[b, best[b]][hyps[b, best[b]].ne(pad)] for b in range(bsz)]


def _parity(data, checkpoint):
    import fairseq_mh  # noqa: F401
    from fairseq import checkpoint_utils

    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data)})
    model = models[0].eval()
    gen = task.build_generator(models, argparse.Namespace(nbest=1))
    assert gen.cfg.sampler == "mask-predict" and gen.cfg.decoding_iterations == 10 and gen.length_beam == 5
    mask, pad = task.target_dictionary.index("<mask>"), task.target_dictionary.pad()
    same = total = 0
    for sample in _batches(task):
        ref = original_mask_predict(model, sample, mask, pad)
        ours = gen.generate(models, sample)
        for r, o in zip(ref, ours):
            total += 1
            same += torch.equal(r, o[0]["tokens"])
    return same, total


def test_mask_predict_is_the_original_algorithm_token_for_token(tiny_mask_predict):
    same, total = _parity(tiny_mask_predict["data"], tiny_mask_predict["checkpoint"])
    assert same == total, f"{same}/{total} identical"


@pytest.fixture(scope="module")
def toy(shared, tmp_path_factory):
    """The genuine original-format checkpoint of ../shared/models/maskpredict-toy, its test
    set binarized with its own dictionaries through the plug-in's task."""
    src = shared / "models" / "maskpredict-toy"
    data = tmp_path_factory.mktemp("toy") / "bin"
    run(["fairseq-mh-preprocess", "--task", "translation_self", "--source-lang", "de", "--target-lang", "en",
         "--srcdict", src / "dict.de.txt", "--tgtdict", src / "dict.en.txt", "--testpref", src / "raw" / "test",
         "--destdir", data, "--workers", "1"])
    return {"dir": src, "data": data}


def test_toy_checkpoint_mask_predict_is_the_original_algorithm(toy):
    same, total = _parity(toy["data"], toy["dir"] / "checkpoint_best.pt")
    assert (same, total) == (50, 50)


@pytest.mark.parametrize("container", ["checkpoint_best.pt", "checkpoint_best.legacy_format.pt"])
def test_toy_checkpoint_reproduces_the_original_decoders_result(toy, container):
    """README of the toy: the original decoder (10 iterations, length beam 5) gets 45 of 50
    sentences exactly right (BLEU 95.6 by the original's scorer)."""
    p = generate(toy["data"], toy["dir"] / container, "--sampler", "mask-predict", "--decoding-iterations", "10",
                 "--length-beam", "5", "--batch-size", "16")
    out = parse_generate(p.stdout)
    assert len(out["H"]) == 50
    exact = sum(out["H"][k][0][1] == out["T"][k][0] for k in out["T"])
    assert exact == 45
    assert 95.0 < float(out["BLEU"].split("BLEU4 = ")[1].split(",")[0]) < 96.5


@pytest.mark.parametrize("sampler", ["gibbs", "block-gibbs", "mh", "block-mh"])
def test_toy_checkpoint_decodes_with_every_sampler(toy, sampler):
    p = generate(toy["data"], toy["dir"] / "checkpoint_best.pt", "--sampler", sampler, "--mh-epochs", "3",
                 "--num-chains", "2", "--length-beam", "2", "--batch-size", "16")
    out = parse_generate(p.stdout)
    assert sorted(out["H"]) == list(range(50))
    assert float(out["BLEU"].split("BLEU4 = ")[1].split(",")[0]) > 50


def test_dictionary_without_mask_is_a_clear_error(toy, tmp_path):
    """The classic pitfall: a Mask-Predict dictionary read without <mask> (fairseq's own task)."""
    p = run(["fairseq-mh-generate", toy["data"], "--task", "translation", "--path", toy["dir"] / "checkpoint_best.pt",
             "--cpu"], check=False)
    assert "translation_self" in user_error(p)


def test_mask_predict_checkpoint_under_the_cmlm_task_is_a_clear_error(toy):
    p = run(["fairseq-mh-generate", toy["data"], "--task", "translation_mh", "--path", toy["dir"] / "checkpoint_best.pt",
             "--cpu"], check=False)
    assert "translation_self" in user_error(p)


def test_unsafe_checkpoint_is_refused(tiny_mask_predict, tmp_path):
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"args": argparse.Namespace(arch="bert_transformer_seq2seq"), "model": {}, "x": RunsCode()}, evil)
    p = generate(tiny_mask_predict["data"], evil, check=False)
    assert "NOT loaded" in user_error(p)
    assert not marker.exists()


def test_data_binarized_with_another_dictionary(tiny_mask_predict, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_mask_predict["data"], data)
    for lang in ("src", "tgt"):
        f = data / f"dict.{lang}.txt"
        f.write_text("\n".join(f.read_text().splitlines()[:-2]) + "\n")
    p = generate(data, tiny_mask_predict["checkpoint"], check=False)
    assert "dictionary" in user_error(p)
