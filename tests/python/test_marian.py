"""MarianMT (opus-mt-it-en architecture): tokenizer, model, search and TorchScript export
against ../shared/golden/marian (transformers 4.33 outputs for deterministic weights)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
pytest.importorskip("sentencepiece")

from mmsearch_models import marian as M  # noqa: E402
from mmsearch_models import marian_export as X  # noqa: E402

ATOL = 1e-4


@pytest.fixture(scope="session")
def mg(golden_dir) -> Path:
    d = golden_dir / "marian"
    if not d.is_dir():
        pytest.skip(f"no Marian goldens at {d}")
    return d


@pytest.fixture(scope="session")
def index(mg):
    return json.loads((mg / "model" / "index.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tok(mg):
    t = mg / "tokenizer"
    return M.MarianTokenizer(t / "source.spm", t / "target.spm", t / "vocab.json")


@pytest.fixture(scope="session")
def eager(mg):
    return M.deterministic_model(M.golden_config())


@pytest.fixture(scope="session")
def eager_bias(mg):
    m = M.deterministic_model(M.golden_config())
    with torch.no_grad():
        m.final_logits_bias.copy_(M.golden_bias(m.config.vocab_size))
    return m


@pytest.fixture(scope="session")
def bundles(mg, tmp_path_factory):
    """Deterministic bundles (zero and golden final_logits_bias), built once."""
    root = tmp_path_factory.mktemp("marian_bundles")
    out = {}
    for key, bias in (("zero", False), ("bias", True)):
        dest = X.export("opus-mt-it-en", root / key, deterministic=True, golden_bias=bias)
        out[key] = X.load_scripted(dest)[0]
    return out


def _cases(mg):
    with open(mg / "tokenizer" / "cases.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _entries(index, supplement: bool):
    src = index["supplement_final_logits_bias"] if supplement else index
    return list(src["sentences"]) + [src["batch"]]


def _load(mg, supplement, entry, what):
    base = mg / "model" / ("bias" if supplement else "")
    return torch.from_numpy(np.load(base / entry["files"][what]))


# --------------------------------------------------------------------------------------------
# Weights and tokenizer


def test_weight_protocol_checksums(mg):
    sd = M.deterministic_state_dict(M.golden_config())
    chk = json.loads((mg / "weights_checksums.json").read_text())
    assert set(chk) == set(sd)
    for k, c in chk.items():
        raw = sd[k].contiguous().numpy().astype("<f4").tobytes()
        assert hashlib.sha256(raw).hexdigest() == c["sha256_f32le"], k


def test_official_key_layout(mg):
    """Our parameter names and shapes are the real opus-mt-it-en state_dict layout."""
    want = {}
    for line in (mg / "keys_real_opus_mt_it_en.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")[:2]
        want[key] = tuple(json.loads(shape))
    got = {k: s for k, (s, _) in M.official_layout(M.opus_mt_it_en_config()).items()}
    assert got == want


def test_strict_loading_rejects_bad_checkpoints():
    c = M.tiny_config(50)
    sd = M.deterministic_state_dict(c)
    m = M.MarianMT(c)
    # the real .bin may omit lm_head and the sinusoid tables
    slim = {k: v for k, v in sd.items() if k not in ("lm_head.weight",) + M.POSITION_KEYS}
    M.load_marian_state_dict(m, slim)
    assert torch.equal(m.lm_head.weight, sd["model.shared.weight"])
    bad = dict(sd)
    del bad["model.encoder.layers.0.fc1.weight"]
    with pytest.raises(M.MarianCheckpointError, match="missing"):
        M.load_marian_state_dict(m, bad)
    bad = dict(sd, extra=torch.zeros(1))
    with pytest.raises(M.MarianCheckpointError, match="unexpected"):
        M.load_marian_state_dict(m, bad)
    bad = dict(sd)
    bad["final_logits_bias"] = torch.zeros(1, 7)
    with pytest.raises(M.MarianCheckpointError, match="wrong shapes"):
        M.load_marian_state_dict(m, bad)


def test_tokenizer_cases(mg, tok):
    cases = _cases(mg)
    assert sum(c["kind"] == "encode" for c in cases) == 410
    assert sum(c["kind"] == "decode" for c in cases) == 82
    for c in cases:
        if c["kind"] == "encode":
            assert tok.tokenize(c["text"]) == c["pieces"], c["id"]
            assert tok.encode(c["text"]) == c["input_ids"], c["id"]
            if "truncated_input_ids" in c:
                assert tok.encode(c["text"], truncation=True) == c["truncated_input_ids"], c["id"]
            assert tok.encode(c["text"], target=True) == c["target_input_ids"], c["id"]
            assert tok.decode(c["target_input_ids"]) == c["target_decoded"], c["id"]
        else:
            assert tok.decode(c["ids"]) == c["decoded_skip_special"], c["id"]
            assert tok.decode(c["ids"], False) == c["decoded_keep_special"], c["id"]
            assert tok.decode(c["ids"], True, False) == c["decoded_skip_special_no_cleanup"], c["id"]


def test_model_inputs_match_tokenizer(index, tok):
    for e in _entries(index, False):
        ids, mask = tok.batch(e["texts"])
        assert ids.tolist() == e["input_ids"] and mask.tolist() == e["attention_mask"]


# --------------------------------------------------------------------------------------------
# Model and search: eager and exported


def _check_forward(mg, model, supplement):
    worst = 0.0
    for e in _entries(model_index(mg), supplement):
        ids, mask = _load(mg, supplement, e, "input_ids"), _load(mg, supplement, e, "attention_mask")
        dec = _load(mg, supplement, e, "decoder_input_ids")
        with torch.no_grad():
            logits, enc = model(ids, mask, dec)
        ref_enc = _load(mg, supplement, e, "encoder_last_hidden_state")
        ref_logits = _load(mg, supplement, e, "decoder_logits")
        assert torch.allclose(enc, ref_enc, atol=ATOL, rtol=ATOL), e["name"]
        assert torch.allclose(logits, ref_logits, atol=ATOL, rtol=ATOL), e["name"]
        worst = max(worst, (enc - ref_enc).abs().max().item(), (logits - ref_logits).abs().max().item())
    return worst


def _check_generate(mg, model, supplement):
    n = 0
    for e in _entries(model_index(mg), supplement):
        ids, mask = _load(mg, supplement, e, "input_ids"), _load(mg, supplement, e, "attention_mask")
        for variant, g in e["generate"].items():
            kw = g["kwargs"]
            max_length = 1 + kw["max_new_tokens"]
            if kw["num_beams"] == 1:
                out = M.greedy_search(model, ids, mask, max_length)
            else:
                out, scores = M.beam_search(model, ids, mask, kw["num_beams"], max_length,
                                            kw.get("length_penalty", 1.0))
                assert np.allclose(scores, g["sequences_scores"], atol=ATOL), (e["name"], variant)
            assert out.tolist() == g["sequences"], (e["name"], variant)
            n += 1
    return n


_INDEX_CACHE = {}


def model_index(mg):
    if mg not in _INDEX_CACHE:
        _INDEX_CACHE[mg] = json.loads((mg / "model" / "index.json").read_text(encoding="utf-8"))
    return _INDEX_CACHE[mg]


def test_eager_encoder_and_logits(mg, eager):
    assert _check_forward(mg, eager, False) <= ATOL


def test_eager_generate_token_identical(mg, eager):
    assert _check_generate(mg, eager, False) == 9 * 4


def test_eager_final_logits_bias_supplement(mg, eager_bias):
    assert _check_forward(mg, eager_bias, True) <= ATOL
    assert _check_generate(mg, eager_bias, True) == 3 * 4


def test_scripted_encoder_and_logits(mg, bundles):
    assert _check_forward(mg, bundles["zero"], False) <= ATOL
    assert _check_forward(mg, bundles["bias"], True) <= ATOL


def test_scripted_generate_token_identical(mg, bundles):
    assert _check_generate(mg, bundles["zero"], False) == 36
    assert _check_generate(mg, bundles["bias"], True) == 12


def test_incremental_equals_full_pass(eager, tok):
    """The cached decoder step by step gives the logits of one full causal pass."""
    ids, mask = tok.batch(["Un piatto di lasagne.", "Ciao!"])
    dec = torch.tensor([[3597, 45, 164, 23, 640], [3597, 12, 13, 14, 15]])
    with torch.no_grad():
        full, enc = eager(ids, mask, dec)
        ck, cv = eager.cross_kv(enc)
        sk, sv = eager.empty_cache(2)
        steps = []
        for t in range(dec.shape[1]):
            lg, sk, sv = eager.decode_step(dec[:, t:t + 1], mask, sk, sv, ck, cv)
            steps.append(lg)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Bundles


def test_manifest_contract(bundles, tmp_path):
    dest = X.export("opus-mt-it-en", tmp_path, tiny=True)
    m = json.loads((dest / "mmsearch.json").read_text(encoding="utf-8"))
    assert m["format"] == "mmsearch-bundle" and m["format_version"] == 1
    assert m["family"] == "marian" and m["name"] == "opus-mt-it-en"
    assert m["modules"] == {"encoder": "encoder.pt", "decoder": "decoder.pt"}
    assert set(m["files"]) == {"encoder.pt", "decoder.pt", "source.spm", "target.spm", "vocab.json"}
    for f, digest in m["files"].items():
        assert hashlib.sha256((dest / f).read_bytes()).hexdigest() == digest
    vocab = json.loads((dest / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    assert m["dims"]["vocab_size"] == len(vocab) == m["tokenizer"]["vocab_size"]
    g = m["generation"]
    assert g["decoder_start_token_id"] == g["pad_token_id"] == len(vocab) - 1
    assert g["bad_words_ids"] == [[len(vocab) - 1]] and g["eos_token_id"] == 0
    assert m["source"]["kind"] == "tiny"


def test_tiny_bundle_reproducible_and_runs(tmp_path):
    a = X.export("opus-mt-it-en", tmp_path / "a", tiny=True)
    b = X.export("opus-mt-it-en", tmp_path / "b", tiny=True)
    for f in ("source.spm", "target.spm", "vocab.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sm, manifest = X.load_scripted(a)
    t = X.tokenizer_of(a)
    ids, mask = t.batch(["Un piatto di lasagne al ragù a casa.", "Ciao!"])
    assert (ids < manifest["dims"]["vocab_size"]).all()
    out = M.greedy_search(sm, ids, mask, 10)
    assert out.shape[0] == 2 and out[:, 0].eq(manifest["generation"]["decoder_start_token_id"]).all()
    beams, _ = M.beam_search(sm, ids, mask, 3, 10)
    assert beams.shape[0] == 2
    # truncation at the model limit
    long = " ".join(["spaghetti"] * 400)
    assert len(t.encode(long, truncation=True)) == manifest["tokenizer"]["model_max_length"]


def test_export_from_checkpoint_dir(tmp_path):
    """The official-layout path: a .bin without lm_head / positions, HF config files."""
    tokdir = tmp_path / "tok"
    files = X.train_tiny_tokenizer(tokdir)
    vocab = json.loads(files["vocab.json"].read_text(encoding="utf-8"))
    c = M.tiny_config(len(vocab))
    sd = M.deterministic_state_dict(c)
    sd = {k: v.clone() for k, v in sd.items() if k not in ("lm_head.weight",) + M.POSITION_KEYS}
    sd["final_logits_bias"] = torch.randn(1, len(vocab))
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save(sd, ck / "pytorch_model.bin")
    for f, p in files.items():
        (ck / f).write_bytes(p.read_bytes())
    hf = {"vocab_size": c.vocab_size, "decoder_vocab_size": c.vocab_size, "d_model": c.d_model,
          "encoder_layers": c.encoder_layers, "decoder_layers": c.decoder_layers,
          "encoder_attention_heads": c.heads, "encoder_ffn_dim": c.ffn_dim,
          "max_position_embeddings": c.max_position_embeddings, "pad_token_id": c.pad_token_id,
          "eos_token_id": 0, "decoder_start_token_id": c.pad_token_id, "scale_embedding": True,
          "num_beams": 4, "max_length": 64, "bad_words_ids": [[c.pad_token_id]]}
    (ck / "config.json").write_text(json.dumps(hf))
    dest = X.export("opus-mt-it-en", tmp_path / "out", checkpoint_dir=str(ck))
    m = json.loads((dest / "mmsearch.json").read_text())
    assert m["source"]["kind"] == "checkpoint" and m["generation"]["num_beams"] == 4
    sm, _ = X.load_scripted(dest)
    assert torch.equal(sm.dec.final_logits_bias, sd["final_logits_bias"])
    # a broken layout is refused with the layout exit code
    del sd["model.decoder.layers.1.fc2.bias"]
    torch.save(sd, ck / "pytorch_model.bin")
    with pytest.raises(X.MarianExportError) as e:
        X.export("opus-mt-it-en", tmp_path / "out2", checkpoint_dir=str(ck))
    assert e.value.code == X.EXIT_LAYOUT and "fc2.bias" in str(e.value)
    assert not (tmp_path / "out2" / "opus-mt-it-en").exists()
