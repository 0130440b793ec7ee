"""The original Mask-Predict architecture, its criterion, and safe checkpoint loading.

The architecture is checked against an independent computation written here from the
formulas (plain tensor ops on the state dict, float64), and against the genuine checkpoint
made by the original code (it must load strictly AND translate its toy test set).
"""

import argparse
import math
import os
import pickle
import types
import zipfile

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.tasks import TASK_REGISTRY

from fairseq_mh import checkpoints
from fairseq_mh.criterions.label_smoothed_length_cross_entropy import (
    LabelSmoothedLengthCrossEntropyCriterion,
)
from fairseq_mh.errors import UserError
from fairseq_mh.models.mask_predict_transformer import MaskPredictTransformerModel, make_positions

PAD, EOS, MASK = 1, 2, 4


# ----------------------------------------------------------------------------- helpers


def make_dict(n_words=10, with_mask=True):
    d = Dictionary()
    if with_mask:
        d.add_symbol("<mask>")
    for i in range(n_words):
        d.add_symbol(f"w{i}")
    return d


def toy_dict(shared, with_mask=True):
    d = Dictionary()
    if with_mask:
        d.add_symbol("<mask>")
    d.add_from_file(str(shared / "models/maskpredict-toy/dict.de.txt"))
    return d


def task_for(d):
    return types.SimpleNamespace(source_dictionary=d, target_dictionary=d)


def small_args(**kw):
    a = dict(arch="bert_transformer_seq2seq", encoder_layers=2, decoder_layers=2, encoder_embed_dim=16,
             encoder_ffn_embed_dim=24, encoder_attention_heads=4, max_source_positions=12,
             max_target_positions=10, share_all_embeddings=True)
    a.update(kw)
    return argparse.Namespace(**a)


def random_model(d, seed=0, **kw):
    """A model whose every tensor (biases, LayerNorm, pad rows too) is random and O(1)."""
    torch.manual_seed(seed)
    model = MaskPredictTransformerModel.build_model(small_args(**kw), task_for(d))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def batch():
    """Source left-padded (fairseq's default), target right-padded, some targets <mask>."""
    src = torch.tensor([[5, 6, 7, 8, 9, EOS],
                        [PAD, PAD, 10, 11, 12, EOS],
                        [PAD, PAD, PAD, PAD, 13, EOS]])
    tgt = torch.tensor([[MASK, 6, MASK, MASK, 14, EOS, PAD],
                        [7, MASK, 9, MASK, MASK, MASK, EOS],
                        [MASK, MASK, EOS, PAD, PAD, PAD, PAD]])
    return src, tgt


def reference(sd, src, tgt, heads):
    """The original's inference, from the formulas, in float64, batch-major throughout."""
    sd = {k: v.double() for k, v in sd.items()}
    E = sd["encoder.embed_tokens.weight"]
    d = E.shape[1]
    hd = d // heads

    def positions(tokens):
        out = torch.full_like(tokens, PAD)
        for b in range(tokens.shape[0]):
            k = 0
            for t in range(tokens.shape[1]):
                if tokens[b, t] != PAD:
                    k += 1
                    out[b, t] = PAD + k
        return out

    def layer_norm(x, p):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return sd[p + ".gamma"] * (x - mu) / torch.sqrt(var + 1e-12) + sd[p + ".beta"]

    def attention(xq, xkv, key_pad, p):
        W, b = sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"]
        q = xq @ W[:d].T + b[:d]
        k = xkv @ W[d:2 * d].T + b[d:2 * d]
        v = xkv @ W[2 * d:].T + b[2 * d:]
        B, T, S = xq.shape[0], xq.shape[1], xkv.shape[1]
        q = q.view(B, T, heads, hd).transpose(1, 2)
        k = k.view(B, S, heads, hd).transpose(1, 2)
        v = v.view(B, S, heads, hd).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        scores = scores.masked_fill(key_pad[:, None, None, :], float("-inf"))
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, d)
        return out @ sd[p + ".out_proj.weight"].T + sd[p + ".out_proj.bias"]

    def ffn(x, p):
        h = x @ sd[p + ".fc1.weight"].T + sd[p + ".fc1.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        return h @ sd[p + ".fc2.weight"].T + sd[p + ".fc2.bias"]

    def n_layers(prefix):
        return len({k.split(".")[2] for k in sd if k.startswith(prefix + ".layers.")})

    # encoder: tokens + positions (no scaling), then the position-less LENGTH token in front
    x = E[src] + sd["encoder.embed_positions.weight"][positions(src)]
    length_row = sd["encoder.embed_lengths.weight"][0].expand(src.shape[0], 1, d)
    x = torch.cat([length_row, x], 1)
    key_pad = torch.cat([torch.zeros(src.shape[0], 1, dtype=torch.bool), src.eq(PAD)], 1)
    for i in range(n_layers("encoder")):
        p = f"encoder.layers.{i}"
        x = layer_norm(x + attention(x, x, key_pad, p + ".self_attn"), p + ".layer_norms.0")
        x = layer_norm(x + ffn(x, p), p + ".layer_norms.1")
    length_logits = x[:, 0] @ sd["encoder.embed_lengths.weight"].T
    length_logits[:, 0] = float("-inf")
    length_lprobs = torch.log_softmax(length_logits, -1)
    enc, enc_pad = x[:, 1:], src.eq(PAD)

    # decoder: full self-attention over non-pad keys, encoder attention, FFN; output = y E^T
    y = sd["decoder.embed_tokens.weight"][tgt] + sd["decoder.embed_positions.weight"][positions(tgt)]
    for i in range(n_layers("decoder")):
        p = f"decoder.layers.{i}"
        y = layer_norm(y + attention(y, y, tgt.eq(PAD), p + ".self_attn"), p + ".self_attn_layer_norm")
        y = layer_norm(y + attention(y, enc, enc_pad, p + ".encoder_attn"), p + ".encoder_attn_layer_norm")
        y = layer_norm(y + ffn(y, p), p + ".final_layer_norm")
    return y @ sd["decoder.embed_tokens.weight"].T, length_lprobs, enc


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: on a busy 2-core machine, intra-op threads wait on each other (measured
    up to 100x slower per decoder pass); one thread keeps the module at a few seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registered(monkeypatch):
    """Old Mask-Predict args name task translation_self; the plug-in's task (written
    elsewhere) registers it. Stand in for it when it is absent, only for this test."""
    if "translation_self" not in TASK_REGISTRY:
        monkeypatch.setitem(TASK_REGISTRY, "translation_self", type("TranslationSelfStub", (), {}))
    checkpoints.install()


def load_and_build(path, d):
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    cfg = state["cfg"].model
    model = MaskPredictTransformerModel.build_model(cfg, task_for(d))
    model.load_state_dict(state["model"], strict=True, model_cfg=cfg)
    return state, model.eval()


def one_line_user_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# ----------------------------------------------------------------------------- architecture


def test_matches_independent_reference_computation():
    d = make_dict()
    model = random_model(d)
    src, tgt = batch()
    with torch.no_grad():
        enc = model.encoder(src, src.ne(PAD).sum(1))
        logits, extra = model.decoder(tgt, enc)
    ref_logits, ref_lengths, ref_enc = reference(model.state_dict(), src, tgt, heads=4)

    assert logits.shape == (3, 7, len(d))
    assert torch.allclose(logits.double(), ref_logits, atol=5e-5)
    assert logits.abs().max() > 1  # the comparison is not between near-zero numbers
    lengths = enc["predicted_lengths"]
    assert lengths.shape == (3, 10)
    assert torch.isneginf(lengths[:, 0]).all()
    assert torch.allclose(lengths[:, 1:].double(), ref_lengths[:, 1:], atol=5e-5)
    assert torch.allclose(lengths.exp().sum(1), torch.ones(3), atol=1e-5)
    assert enc["encoder_out"].shape == (6, 3, 16)  # time-major, LENGTH token removed
    assert torch.allclose(enc["encoder_out"].transpose(0, 1).double(), ref_enc, atol=5e-5)
    assert torch.equal(enc["encoder_padding_mask"], src.eq(PAD))
    assert extra["predicted_lengths"] is lengths
    # eps 1e-12 (not fairseq's 1e-5) shows only at tiny variance: check the norm directly there
    norm = model.decoder.layers[0].final_layer_norm
    x = 1e-3 * torch.randn(5, 16, dtype=torch.float64)
    want = norm.gamma.double() * (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-12) + norm.beta.double()
    assert torch.allclose(norm(x.float()).double(), want, atol=1e-4)
    # the pieces the sampling engine uses give the same numbers
    features = model.decoder.extract_features(tgt, enc)
    assert features.shape == (3, 7, 16)
    flat = model.decoder.output_layer(features.reshape(-1, 16))
    assert torch.allclose(flat.view(3, 7, -1), logits, atol=1e-6)


def test_padding_side_and_batch_composition_do_not_change_outputs():
    d = make_dict()
    model = random_model(d, seed=1)
    left = torch.tensor([[PAD, PAD, 10, 11, 12, EOS]])
    right = torch.tensor([[10, 11, 12, EOS, PAD, PAD]])
    alone = torch.tensor([[10, 11, 12, EOS]])
    tgt = torch.tensor([[MASK, 7, MASK, EOS]])
    assert torch.equal(make_positions(left, PAD)[0, 2:], make_positions(alone, PAD)[0])
    outs = []
    with torch.no_grad():
        for src in (left, right, alone):
            enc = model.encoder(src, None)
            outs.append((model.decoder(tgt, enc)[0], enc["predicted_lengths"]))
        # inside a batch with a longer sentence, and with the target right-padded
        src2 = torch.tensor([[PAD, PAD, 10, 11, 12, EOS], [5, 6, 7, 8, 9, EOS]])
        tgt2 = torch.tensor([[MASK, 7, MASK, EOS, PAD], [MASK] * 4 + [EOS]])
        enc = model.encoder(src2, None)
        outs.append((model.decoder(tgt2, enc)[0][:1, :4], enc["predicted_lengths"][:1]))
    for logits, lengths in outs[1:]:
        assert torch.allclose(logits, outs[0][0], atol=1e-5)
        assert torch.allclose(lengths[:, 1:], outs[0][1][:, 1:], atol=1e-5)


def test_parameter_names_are_the_original_state_dict_keys_and_nothing_is_upgraded():
    model = random_model(make_dict())
    keys = set(model.state_dict())
    expected = {"encoder.version", "encoder.embed_tokens.weight", "encoder.embed_positions.weight",
                "encoder.embed_lengths.weight", "decoder.version", "decoder.embed_tokens.weight",
                "decoder.embed_positions.weight"}
    attn = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    lin = [f"{fc}.{w}" for fc in ("fc1", "fc2") for w in ("weight", "bias")]
    for n in range(2):
        e, dd = f"encoder.layers.{n}.", f"decoder.layers.{n}."
        expected |= {e + "self_attn." + a for a in attn} | {e + x for x in lin}
        expected |= {f"{e}layer_norms.{i}.{g}" for i in (0, 1) for g in ("gamma", "beta")}
        expected |= {f"{dd}{m}.{a}" for m in ("self_attn", "encoder_attn") for a in attn}
        expected |= {dd + x for x in lin}
        expected |= {f"{dd}{ln}.{g}" for ln in ("self_attn_layer_norm", "encoder_attn_layer_norm",
                                                  "final_layer_norm") for g in ("gamma", "beta")}
    assert keys == expected
    assert model.state_dict()["encoder.layers.0.self_attn.in_proj_weight"].shape == (48, 16)
    # shared embeddings: one tensor under both keys
    assert model.encoder.embed_tokens.weight is model.decoder.embed_tokens.weight
    assert model.encoder.embed_positions.weight.shape == (12 + PAD + 1, 16)
    # fairseq's upgrade hooks (which split in_proj / rename norms) leave the dict untouched
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    model.upgrade_state_dict(sd)
    assert set(sd) == keys
    model.load_state_dict(sd, strict=True)


def test_reorder_encoder_out_and_max_positions():
    model = random_model(make_dict())
    src, _ = batch()
    enc = model.encoder(src, None)
    order = torch.tensor([2, 0, 0])
    out = model.encoder.reorder_encoder_out(enc, order)
    assert torch.equal(out["encoder_out"], enc["encoder_out"][:, order])
    assert torch.equal(out["encoder_padding_mask"], enc["encoder_padding_mask"][order])
    assert torch.equal(out["predicted_lengths"], enc["predicted_lengths"][order])
    assert model.max_positions() == (12, 10)
    with pytest.raises(UserError) as e:
        model.encoder(torch.full((1, 13), 7), None)
    one_line_user_error(e, "13 tokens", "at most 12")


def test_criterion_is_the_original_loss():
    d = make_dict()
    model = random_model(d)
    src, tgt = batch()
    target = torch.where(tgt.eq(MASK), torch.randint(5, len(d), tgt.shape), torch.full_like(tgt, PAD))
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1), "prev_output_tokens": tgt},
              "target": target}
    crit = LabelSmoothedLengthCrossEntropyCriterion(task_for(d), label_smoothing=0.1)
    loss, sample_size, log = crit(model, sample)
    lprobs = model(**sample["net_input"])[0].log_softmax(-1)
    scored = target.ne(PAD)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[scored].sum()
    smooth = -lprobs.sum(-1)[scored].sum()
    lengths = model.encoder(src, None)["predicted_lengths"]
    length_nll = -lengths[torch.arange(3), tgt.ne(PAD).sum(1)].sum()
    assert sample_size == int(scored.sum()) == 9
    assert torch.allclose(loss, 0.9 * nll + 0.1 / len(d) * smooth + length_nll, atol=1e-4)
    assert torch.allclose(log["nll_loss"], nll, atol=1e-4)
    assert torch.allclose(log["length_loss"], length_nll, atol=1e-4)


# ----------------------------------------------------------------------------- checkpoints


def test_toy_checkpoints_load_weights_only_and_translate(shared, registered, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    d = toy_dict(shared)
    assert len(d) == 48 and d.index("<mask>") == MASK
    toy = shared / "models/maskpredict-toy"
    state, model = load_and_build(toy / "checkpoint_best.pt", d)
    legacy_state, legacy = load_and_build(toy / "checkpoint_best.legacy_format.pt", d)
    assert calls == [True, True]
    assert len(state["model"]) == len(legacy_state["model"]) == 67
    cfg = state["cfg"].model
    assert (cfg.arch, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_embed_dim,
            cfg.encoder_attention_heads, cfg.max_source_positions, cfg.max_target_positions) == \
        ("bert_transformer_seq2seq", 2, 2, 64, 4, 64, 64)
    assert state["cfg"].criterion.label_smoothing == 0.1

    src_lines = (toy / "raw/test.de").read_text().splitlines()
    ref_lines = (toy / "raw/test.en").read_text().splitlines()
    srcs = [[d.index(w) for w in line.split()] + [EOS] for line in src_lines]
    width = max(map(len, srcs))
    src = torch.tensor([[PAD] * (width - len(s)) + s for s in srcs])  # left-padded batch
    with torch.no_grad():
        enc = model.encoder(src, None)
        enc_legacy = legacy.encoder(src, None)
        refs = [[d.index(w) for w in line.split()] + [EOS] for line in ref_lines]
        # mask-predict at the reference length, T = 10 (the original's schedule)
        L = max(map(len, refs))
        tokens = torch.tensor([[MASK] * len(r) + [PAD] * (L - len(r)) for r in refs])
        probs = torch.where(tokens.eq(PAD), 1.0, 0.0)
        for c in range(10):
            logits = model.decoder(tokens, enc)[0]
            if c == 0:
                assert torch.equal(logits, legacy.decoder(tokens, enc_legacy)[0])
            p, best = logits.softmax(-1).max(-1)
            update = tokens.eq(MASK)
            tokens = torch.where(update, best, tokens)
            probs = torch.where(update, p, probs)
            for b, r in enumerate(refs):  # re-mask max(1, floor(L (1 - c/T))) least probable
                if c < 9:
                    n = max(1, int(len(r) * (1 - (c + 1) / 10)))
                    tokens[b, probs[b, : len(r)].topk(n, largest=False).indices] = MASK
    assert torch.equal(enc["predicted_lengths"], enc_legacy["predicted_lengths"])
    # the real weights must work through this architecture: right lengths, right words
    length_hits = sum(int(enc["predicted_lengths"][b].argmax()) == len(r) for b, r in enumerate(refs))
    exact = sum(tokens[b, : len(r)].tolist() == r for b, r in enumerate(refs))
    assert length_hits >= 45 and exact >= 45, (length_hits, exact)  # measured: 47 and 47 of 50


def test_sizes_come_from_the_tensors_and_fp16_weights_load(tmp_path, registered):
    d = make_dict()
    model = random_model(d, encoder_layers=3, decoder_layers=1, encoder_embed_dim=32,
                         encoder_ffn_embed_dim=40, max_source_positions=20, max_target_positions=30)
    # saved args with the WRONG sizes (heads are kept from args: 4 divides 32)
    args = argparse.Namespace(arch="bert_transformer_seq2seq", task="translation_self",
                              criterion="label_smoothed_length_cross_entropy", label_smoothing=0.1,
                              encoder_layers=6, decoder_layers=6, encoder_embed_dim=512,
                              encoder_ffn_embed_dim=2048, encoder_attention_heads=4,
                              max_source_positions=1024, max_target_positions=1024,
                              share_all_embeddings=True)
    half = {k: v.half() for k, v in model.state_dict().items()}
    torch.save({"args": args, "model": half}, tmp_path / "fp16.pt")
    state, loaded = load_and_build(tmp_path / "fp16.pt", d)
    assert state["model"]["encoder.embed_tokens.weight"].dtype == torch.float16
    cfg = state["cfg"].model
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_embed_dim, cfg.decoder_ffn_embed_dim,
            cfg.max_source_positions, cfg.max_target_positions) == (3, 1, 32, 40, 20, 30)
    assert next(loaded.parameters()).dtype == torch.float32
    expected = MaskPredictTransformerModel.build_model(small_args(
        encoder_layers=3, decoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=40,
        max_source_positions=20, max_target_positions=30), task_for(d))
    expected.load_state_dict({k: v.float() for k, v in half.items()})
    expected.eval()
    src, tgt = batch()
    with torch.no_grad():
        a = loaded(src, None, tgt)[0]
        b = expected(src, None, tgt)[0]
    assert torch.equal(a, b)
    assert torch.allclose(a, model(src, None, tgt)[0], atol=0.05)  # fp16 rounding only


def test_fairseq_cmlm_checkpoint_loads_weights_only(shared, registered):
    state = checkpoint_utils.load_checkpoint_to_cpu(str(shared / "models/m30k-cmlm/checkpoint.pt"))
    assert state["cfg"].model.arch == "cmlm_transformer"
    assert "decoder.embed_length.weight" in state["model"]


def test_install_is_idempotent():
    checkpoints.install()
    fn = checkpoint_utils.load_checkpoint_to_cpu
    n = len(torch.serialization.get_safe_globals())
    checkpoints.install()
    assert checkpoint_utils.load_checkpoint_to_cpu is fn is checkpoints.load_checkpoint_to_cpu
    assert len(torch.serialization.get_safe_globals()) == n
    names = {g[1] for g in torch.serialization.get_safe_globals() if isinstance(g, tuple)}
    assert {"fairseq.meters.AverageMeter", "fairseq.meters.StopwatchMeter",
            "fairseq.meters.TimeMeter"} <= names


class _RunsCommand:
    """Unpickling this runs a shell command: the kind of file weights-only loading must stop."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_files_give_one_line_user_errors(tmp_path):
    checkpoints.install()
    load = checkpoint_utils.load_checkpoint_to_cpu

    with pytest.raises(UserError) as e:
        load(str(tmp_path / "nope.pt"))
    one_line_user_error(e, "nope.pt", "does not exist")

    with pytest.raises(UserError) as e:
        load(str(tmp_path))
    one_line_user_error(e, "is a directory", "checkpoint_best.pt")

    text = tmp_path / "notes.txt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(UserError) as e:
        load(str(text))
    one_line_user_error(e, "notes.txt", "is not a torch checkpoint")

    zipped = tmp_path / "data.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/readme.txt", "hello")
    with pytest.raises(UserError) as e:
        load(str(zipped))
    one_line_user_error(e, "data.zip", "is not a torch checkpoint")

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError) as e:
        load(str(empty))
    one_line_user_error(e, "empty.pt", "is not a torch checkpoint")

    bare = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), bare)
    with pytest.raises(UserError) as e:
        load(str(bare))
    one_line_user_error(e, "tensor.pt", "no 'model' entry")

    # pickled code: refused before it runs, and nothing retries with unsafe loading
    marker = tmp_path / "SIDE_EFFECT"
    evil = tmp_path / "evil.pt"
    torch.save({"args": argparse.Namespace(arch="x"), "model": {}, "extra": _RunsCommand(marker)}, evil)
    with pytest.raises(UserError) as e:
        load(str(evil))
    one_line_user_error(e, "evil.pt", "NOT loaded", "system", "nothing falls back to unsafe loading")
    assert not marker.exists()
    live = tmp_path / "LIVE"
    pickle.loads(pickle.dumps(_RunsCommand(live)))  # the payload is real: plain pickle runs it
    assert live.exists()


def test_dictionary_size_mismatch_is_a_user_error(shared, registered):
    toy = shared / "models/maskpredict-toy/checkpoint_best.pt"
    with pytest.raises(UserError) as e:
        load_and_build(toy, toy_dict(shared, with_mask=False))
    one_line_user_error(e, "47 entries", "48 rows", "--task translation_self", "<mask>")

    with pytest.raises(UserError) as e:
        load_and_build(toy, make_dict(n_words=20))
    one_line_user_error(e, "25 entries", "48 rows", "dict.*.txt")
