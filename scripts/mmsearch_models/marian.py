"""MarianMT (OPUS-MT) encoder-decoder, its tokenizer and its search, written for mmsearch.

An independent implementation of the architecture of ``Helsinki-NLP/opus-mt-it-en`` as run by
Hugging Face transformers 4.33 (see ``../shared/golden/marian/README.md``):

* post-LN transformer, 6 + 6 layers, d_model 512, 8 heads, FFN 2048, SiLU ("swish");
* token embeddings scaled by sqrt(d_model), one tensor shared by encoder, decoder and lm_head;
* static sinusoid positions (sin in the first half of the columns, cos in the second), from 0;
* ``final_logits_bias`` added to the logits;
* parameter names follow the official ``MarianMTModel.state_dict()`` layout exactly, so a
  checkpoint loads strictly (``load_marian_state_dict``).

``MarianTokenizer`` reproduces the MarianTokenizer encode / decode rules of that version on top of
sentencepiece; ``greedy_search`` and ``beam_search`` reproduce ``generate()`` (NoBadWords, forced
EOS, log-softmax renormalisation; 4.33 beam hypothesis scoring and stop test).
"""
from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class MarianConfig:
    vocab_size: int = 80379
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    heads: int = 8
    ffn_dim: int = 2048
    max_position_embeddings: int = 512
    pad_token_id: int = 80378
    eos_token_id: int = 0
    unk_token_id: int = 1
    decoder_start_token_id: int = 80378
    scale_embedding: bool = True
    # generation settings (generation_config.json of opus-mt-it-en)
    num_beams: int = 6
    max_length: int = 512
    length_penalty: float = 1.0
    bad_words_ids: List[List[int]] = field(default_factory=lambda: [[80378]])
    forced_eos_token_id: int = 0
    renormalize_logits: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "MarianConfig":
        known = {k: v for k, v in d.items() if k in MarianConfig.__dataclass_fields__}
        return MarianConfig(**known)

    @staticmethod
    def from_hf(hf: dict, gen: Optional[dict] = None) -> "MarianConfig":
        """From a transformers ``config.json`` (+ ``generation_config.json``) dict."""
        gen = dict(gen or {})
        c = MarianConfig(
            vocab_size=int(hf.get("decoder_vocab_size") or hf["vocab_size"]),
            d_model=int(hf["d_model"]), encoder_layers=int(hf["encoder_layers"]),
            decoder_layers=int(hf["decoder_layers"]), heads=int(hf["encoder_attention_heads"]),
            ffn_dim=int(hf["encoder_ffn_dim"]),
            max_position_embeddings=int(hf["max_position_embeddings"]),
            pad_token_id=int(hf["pad_token_id"]), eos_token_id=int(hf["eos_token_id"]),
            decoder_start_token_id=int(hf.get("decoder_start_token_id", hf["pad_token_id"])),
            scale_embedding=bool(hf.get("scale_embedding", True)))
        for k in ("num_beams", "max_length", "length_penalty", "bad_words_ids",
                  "forced_eos_token_id", "renormalize_logits"):
            v = gen.get(k, hf.get(k))
            if v is not None:
                setattr(c, k, v)
        return c


def opus_mt_it_en_config() -> MarianConfig:
    return MarianConfig()


def golden_config(vocab_size: int = 3598) -> MarianConfig:
    """The config of ``../shared/golden/marian``: opus-mt-it-en with a small vocabulary."""
    pad = vocab_size - 1
    return MarianConfig(vocab_size=vocab_size, pad_token_id=pad, decoder_start_token_id=pad,
                        bad_words_ids=[[pad]])


def tiny_config(vocab_size: int) -> MarianConfig:
    pad = vocab_size - 1
    return MarianConfig(vocab_size=vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
                        heads=4, ffn_dim=64, max_position_embeddings=128, pad_token_id=pad,
                        decoder_start_token_id=pad, bad_words_ids=[[pad]], num_beams=4,
                        max_length=64)


# --------------------------------------------------------------------------------------------
# Model


def sinusoid_table(n_pos: int, dim: int) -> Tensor:
    """Marian's static positions: angle in float64, sin in columns [0, dim/2), cos after."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    half = (dim + 1) // 2
    out = torch.zeros(n_pos, dim, dtype=torch.float64)
    out[:, :half] = torch.sin(angle[:, 0::2])
    out[:, half:] = torch.cos(angle[:, 1::2])
    return out.float()


class SinusoidPositions(nn.Module):
    def __init__(self, n_pos: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(sinusoid_table(n_pos, dim), requires_grad=False)

    def forward(self, length: int, past: int) -> Tensor:
        return self.weight[past:past + length]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> Tensor:
        b, t = x.size(0), x.size(1)
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def attend(self, x: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor]) -> Tensor:
        b, t, d = x.size(0), x.size(1), x.size(2)
        q = self.split(self.q_proj(x) * self.scaling)
        w = torch.matmul(q, k.transpose(-1, -2))
        if bias is not None:
            w = w + bias
        w = torch.softmax(w, dim=-1)
        o = torch.matmul(w, v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(o)


class EncoderLayer(nn.Module):
    def __init__(self, c: MarianConfig):
        super().__init__()
        self.self_attn = Attention(c.d_model, c.heads)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.fc1 = nn.Linear(c.d_model, c.ffn_dim)
        self.fc2 = nn.Linear(c.ffn_dim, c.d_model)
        self.final_layer_norm = nn.LayerNorm(c.d_model)

    def forward(self, h: Tensor, bias: Tensor) -> Tensor:
        k, v = self.self_attn.project_kv(h)
        h = self.self_attn_layer_norm(h + self.self_attn.attend(h, k, v, bias))
        h = self.final_layer_norm(h + self.fc2(F.silu(self.fc1(h))))
        return h


class DecoderLayer(nn.Module):
    def __init__(self, c: MarianConfig):
        super().__init__()
        self.self_attn = Attention(c.d_model, c.heads)
        self.self_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.encoder_attn = Attention(c.d_model, c.heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(c.d_model)
        self.fc1 = nn.Linear(c.d_model, c.ffn_dim)
        self.fc2 = nn.Linear(c.ffn_dim, c.d_model)
        self.final_layer_norm = nn.LayerNorm(c.d_model)

    def forward(self, h: Tensor, self_bias: Tensor, past_k: Tensor, past_v: Tensor,
                cross_k: Tensor, cross_v: Tensor, cross_bias: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        k, v = self.self_attn.project_kv(h)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        h = self.self_attn_layer_norm(h + self.self_attn.attend(h, k, v, self_bias))
        h = self.encoder_attn_layer_norm(h + self.encoder_attn.attend(h, cross_k, cross_v, cross_bias))
        h = self.final_layer_norm(h + self.fc2(F.silu(self.fc1(h))))
        return h, k, v


NEG_INF_F32 = -3.4028234663852886e38  # torch.finfo(torch.float32).min (TorchScript has no finfo)


def padding_bias(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, L] 1/0 mask -> additive [B, 1, 1, L] (transformers: 0 or finfo(float32).min)."""
    m = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * -3.4028234663852886e38


def causal_bias(t: int, past: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[1, 1, T, past+T]: query i (position past+i) sees keys 0..past+i."""
    q = torch.arange(t, device=device)[:, None] + past
    k = torch.arange(past + t, device=device)[None, :]
    bias = torch.zeros(t, past + t, dtype=dtype, device=device)
    bias = bias.masked_fill(k > q, -3.4028234663852886e38)
    return bias[None, None]


class Encoder(nn.Module):
    def __init__(self, c: MarianConfig, shared: nn.Embedding):
        super().__init__()
        self.embed_tokens = shared
        self.embed_positions = SinusoidPositions(c.max_position_embeddings, c.d_model)
        self.layers = nn.ModuleList([EncoderLayer(c) for _ in range(c.encoder_layers)])
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.embed_tokens(input_ids) * self.embed_scale
        h = h + self.embed_positions(input_ids.shape[1], 0)
        bias = padding_bias(attention_mask, h.dtype)
        for layer in self.layers:
            h = layer(h, bias)
        return h


class Decoder(nn.Module):
    def __init__(self, c: MarianConfig, shared: nn.Embedding):
        super().__init__()
        self.embed_tokens = shared
        self.embed_positions = SinusoidPositions(c.max_position_embeddings, c.d_model)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.decoder_layers)])
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0

    def cross_kv(self, encoder_hidden: Tensor) -> Tuple[Tensor, Tensor]:
        """Cross-attention keys / values of every layer: two [layers, B, H, L, hd] tensors."""
        ks, vs = [], []
        for layer in self.layers:
            k, v = layer.encoder_attn.project_kv(encoder_hidden)
            ks.append(k)
            vs.append(v)
        return torch.stack(ks), torch.stack(vs)

    def forward(self, input_ids: Tensor, encoder_mask: Tensor, self_k: Tensor, self_v: Tensor,
                cross_k: Tensor, cross_v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """input_ids [B,T] at positions past..past+T-1 where past = self_k.shape[3];
        returns hidden [B,T,D] and the grown self-attention caches [layers,B,H,past+T,hd]."""
        t = input_ids.shape[1]
        past = self_k.shape[3]
        h = self.embed_tokens(input_ids) * self.embed_scale
        h = h + self.embed_positions(t, past)
        sb = causal_bias(t, past, h.dtype, h.device)
        cb = padding_bias(encoder_mask, h.dtype)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            h, k, v = layer(h, sb, self_k[i], self_v[i], cross_k[i], cross_v[i], cb)
            new_k.append(k)
            new_v.append(v)
        return h, torch.stack(new_k), torch.stack(new_v)


class MarianModel(nn.Module):
    def __init__(self, c: MarianConfig):
        super().__init__()
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = Encoder(c, self.shared)
        self.decoder = Decoder(c, self.shared)


class MarianMT(nn.Module):
    """Parameter names = transformers ``MarianMTModel`` (model.*, lm_head, final_logits_bias)."""

    def __init__(self, c: MarianConfig):
        super().__init__()
        self.config = c
        self.model = MarianModel(c)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.model.shared.weight
        self.register_buffer("final_logits_bias", torch.zeros(1, c.vocab_size))

    # -- building blocks used by the export and the search --
    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.encoder(input_ids, attention_mask)

    def cross_kv(self, encoder_hidden: Tensor) -> Tuple[Tensor, Tensor]:
        return self.model.decoder.cross_kv(encoder_hidden)

    def empty_cache(self, batch: int, dtype: torch.dtype = torch.float32) -> Tuple[Tensor, Tensor]:
        c = self.config
        z = torch.zeros(c.decoder_layers, batch, c.heads, 0, c.d_model // c.heads, dtype=dtype)
        return z, z.clone()

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden) + self.final_logits_bias

    def decode_step(self, input_ids: Tensor, encoder_mask: Tensor, self_k: Tensor, self_v: Tensor,
                    cross_k: Tensor, cross_v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, k, v = self.model.decoder(input_ids, encoder_mask, self_k, self_v, cross_k, cross_v)
        return self.logits(h), k, v

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                decoder_input_ids: Tensor) -> Tuple[Tensor, Tensor]:
        """Teacher-forced pass without a cache: (decoder logits [B,T,V], encoder states [B,L,D])."""
        enc = self.encode(input_ids, attention_mask)
        ck, cv = self.model.decoder.cross_kv(enc)
        sk, sv = self.empty_cache(input_ids.shape[0], enc.dtype)
        logits, _, _ = self.decode_step(decoder_input_ids, attention_mask, sk, sv, ck, cv)
        return logits, enc


# --------------------------------------------------------------------------------------------
# Checkpoint loading (strict, official key layout) and the golden weight protocol

TIED_KEYS = ("model.shared.weight", "model.encoder.embed_tokens.weight",
             "model.decoder.embed_tokens.weight", "lm_head.weight")
POSITION_KEYS = ("model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight")


class MarianCheckpointError(Exception):
    pass


def official_layout(c: MarianConfig) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of ``MarianMTModel.state_dict()`` for this config."""
    m = MarianMT(c)
    return {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()}


def load_marian_state_dict(model: MarianMT, sd: Dict[str, Tensor]) -> None:
    """Strict load in the official layout. ``lm_head.weight``, the encoder / decoder
    ``embed_tokens`` copies and the sinusoid tables may be absent (transformers re-creates
    them); every other key must be present with its exact shape, and nothing else may be."""
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    optional = set(TIED_KEYS[1:]) | set(POSITION_KEYS)
    missing = [k for k in layout if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in layout]
    wrong = [f"{k}: {tuple(sd[k].shape)} != {layout[k]}" for k in sd
             if k in layout and tuple(sd[k].shape) != layout[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}")
        if wrong:
            parts.append(f"wrong shapes: {'; '.join(wrong[:8])}")
        raise MarianCheckpointError("checkpoint does not fit MarianMT: " + " | ".join(parts))
    shared = sd["model.shared.weight"]
    for k in TIED_KEYS[1:]:
        if k in sd and not torch.equal(sd[k].float(), shared.float()):
            raise MarianCheckpointError(f"{k} differs from model.shared.weight (must be tied)")
    with torch.no_grad():
        targets = model.state_dict(keep_vars=True)
        for k, v in sd.items():
            if k in TIED_KEYS[1:]:
                continue
            targets[k].data.copy_(v.to(targets[k].dtype))


GOLDEN_SCALES_SUFFIX = {".q_proj.weight": 2.0, ".k_proj.weight": 2.0, ".fc2.weight": 8.0}
GOLDEN_SCALES_KEY = {"model.shared.weight": 4.0}


def deterministic_state_dict(c: MarianConfig, scaled: bool = True) -> Dict[str, Tensor]:
    """The golden weight protocol (README "Weights: the protocol"), in the official layout.
    Tied keys share one tensor; the sinusoid tables and final_logits_bias are as constructed."""
    layout = official_layout(c)
    sd: Dict[str, Tensor] = {}
    for key in sorted(layout):
        shape, dtype = layout[key]
        if key == "final_logits_bias":
            sd[key] = torch.zeros(shape, dtype=dtype)
            continue
        if key.endswith("embed_positions.weight"):
            sd[key] = sinusoid_table(*shape)
            continue
        if key in TIED_KEYS[1:]:
            continue  # same tensor as model.shared.weight (written last among the four)
        torch.manual_seed(zlib.crc32(key.encode("utf-8")))
        r = torch.randn(shape, dtype=torch.float32)
        if "layer_norm" in key and key.endswith(".weight"):
            v = r * 0.02 + 1.0
        else:
            v = r * 0.02
        if scaled:
            f = GOLDEN_SCALES_KEY.get(key, 1.0)
            for suf, s in GOLDEN_SCALES_SUFFIX.items():
                if key.endswith(suf):
                    f = s
            if f != 1.0:
                v = v * f
        sd[key] = v
    if scaled:
        sd["model.shared.weight"][0].mul_(2.0)
    for k in TIED_KEYS[1:]:
        sd[k] = sd["model.shared.weight"]
    return sd


def golden_bias(vocab_size: int) -> Tensor:
    torch.manual_seed(zlib.crc32(b"final_logits_bias"))
    return torch.randn(1, vocab_size) * 0.5


def deterministic_model(c: MarianConfig, scaled: bool = True) -> MarianMT:
    m = MarianMT(c)
    load_marian_state_dict(m, deterministic_state_dict(c, scaled))
    return m.eval()


# --------------------------------------------------------------------------------------------
# Tokenizer (MarianTokenizer behaviour, transformers 4.33)

SPECIAL_LITERALS = ("</s>", "<unk>", "<pad>")
_LANG_CODE = re.compile(r">>.+<<")
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class MarianTokenizer:
    def __init__(self, source_spm: Path, target_spm: Path, vocab_json: Path,
                 model_max_length: int = 512):
        import sentencepiece as spm
        for p in (source_spm, target_spm, vocab_json):
            if not Path(p).is_file():
                raise FileNotFoundError(f"{p}: not found")
        self.src = spm.SentencePieceProcessor(model_file=str(source_spm))
        self.tgt = spm.SentencePieceProcessor(model_file=str(target_spm))
        self.vocab: Dict[str, int] = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        self.inv = {i: t for t, i in self.vocab.items()}
        self.eos_id = self.vocab["</s>"]
        self.unk_id = self.vocab["<unk>"]
        self.pad_id = self.vocab["<pad>"]
        self.model_max_length = model_max_length

    @staticmethod
    def _split_specials(text: str) -> List[str]:
        pattern = "(" + "|".join(re.escape(s) for s in SPECIAL_LITERALS) + ")"
        parts = re.split(pattern, text)
        out: List[str] = []
        for i, p in enumerate(parts):
            if p in SPECIAL_LITERALS and i % 2 == 1:
                out.append(p)
                continue
            if i > 0:  # after a literal
                p = p.lstrip()
            if i < len(parts) - 1:  # before a literal
                p = p.rstrip()
            if p:
                out.append(p)
        return out

    def tokenize(self, text: str, target: bool = False) -> List[str]:
        sp = self.tgt if target else self.src
        pieces: List[str] = []
        for part in self._split_specials(text):
            if part in SPECIAL_LITERALS:
                pieces.append(part)
                continue
            m = _LANG_CODE.match(part)
            code = [m.group(0)] if m else []
            part = _LANG_CODE.sub("", part)
            pieces.extend(code + sp.encode(part, out_type=str))
        return pieces

    def encode(self, text: str, target: bool = False, truncation: bool = False) -> List[int]:
        ids = [self.vocab.get(p, self.unk_id) for p in self.tokenize(text, target)]
        if truncation and len(ids) + 1 > self.model_max_length:
            ids = ids[:self.model_max_length - 1]
        return ids + [self.eos_id]

    def batch(self, texts: Sequence[str], truncation: bool = False) -> Tuple[Tensor, Tensor]:
        rows = [torch.tensor(self.encode(t, truncation=truncation)) for t in texts]
        ids = pad_sequence(rows, batch_first=True, padding_value=self.pad_id)
        mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True)
        return ids, mask

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True,
               clean_up: bool = True) -> str:
        special = {self.eos_id, self.unk_id, self.pad_id}
        out, run = "", []
        for i in ids:
            i = int(i)
            tok = self.inv.get(i, "<unk>")
            if i in special:
                if skip_special_tokens:
                    continue
                out += self.tgt.decode_pieces(run) + tok + " "
                run = []
            else:
                run.append(tok)
        out += self.tgt.decode_pieces(run)
        out = out.strip()
        if clean_up:
            for a, b in _CLEANUPS:
                out = out.replace(a, b)
        return out


# --------------------------------------------------------------------------------------------
# Search (transformers 4.33 generate() semantics)


def _process(logp: Tensor, cur_len: int, max_length: int, c: MarianConfig) -> Tensor:
    """NoBadWords -> ForcedEOS -> LogitNormalization on [N, V] scores."""
    s = logp.clone()
    for bad in c.bad_words_ids:
        if len(bad) == 1:
            s[:, bad[0]] = -float("inf")
    if cur_len == max_length - 1 and c.forced_eos_token_id is not None:
        s[:, :] = -float("inf")
        s[:, c.forced_eos_token_id] = 0.0
    if c.renormalize_logits:
        s = torch.log_softmax(s, dim=-1)
    return s


@torch.no_grad()
def greedy_search(model: MarianMT, input_ids: Tensor, attention_mask: Tensor,
                  max_length: int) -> Tensor:
    c = model.config
    enc = model.encode(input_ids, attention_mask)
    ck, cv = model.cross_kv(enc)
    b = input_ids.shape[0]
    sk, sv = model.empty_cache(b, enc.dtype)
    seq = torch.full((b, 1), c.decoder_start_token_id, dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    while seq.shape[1] < max_length:
        logits, sk, sv = model.decode_step(seq[:, -1:], attention_mask, sk, sv, ck, cv)
        scores = _process(logits[:, -1, :].float(), seq.shape[1], max_length, c)
        nxt = scores.argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, c.pad_token_id), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        done = done | (nxt == c.eos_token_id)
        if bool(done.all()):
            break
    return seq


class _Hyps:
    def __init__(self, n: int, lp: float):
        self.n, self.lp = n, lp
        self.beams: List[Tuple[float, List[int]]] = []
        self.worst = 1e9

    def add(self, hyp: List[int], sum_logprobs: float) -> None:
        score = sum_logprobs / (len(hyp) ** self.lp)
        if len(self.beams) < self.n or score > self.worst:
            self.beams.append((score, hyp))
            if len(self.beams) > self.n:
                order = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[order[0][1]]
                self.worst = order[1][0]
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.beams) < self.n:
            return False
        return self.worst >= best_sum_logprobs / (cur_len ** self.lp)


@torch.no_grad()
def beam_search(model: MarianMT, input_ids: Tensor, attention_mask: Tensor, num_beams: int,
                max_length: int, length_penalty: float = 1.0) -> Tuple[Tensor, List[float]]:
    c = model.config
    b = input_ids.shape[0]
    enc = model.encode(input_ids, attention_mask)
    enc = enc.repeat_interleave(num_beams, dim=0)
    mask = attention_mask.repeat_interleave(num_beams, dim=0)
    ck, cv = model.cross_kv(enc)
    sk, sv = model.empty_cache(b * num_beams, enc.dtype)
    seq = torch.full((b * num_beams, 1), c.decoder_start_token_id, dtype=torch.long)
    beam_scores = torch.zeros(b, num_beams)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    hyps = [_Hyps(num_beams, length_penalty) for _ in range(b)]
    done = [False] * b
    eos = c.eos_token_id
    while True:
        cur = seq.shape[1]
        logits, sk, sv = model.decode_step(seq[:, -1:], mask, sk, sv, ck, cv)
        logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        scores = _process(logp, cur, max_length, c) + beam_scores[:, None]
        v = scores.shape[-1]
        scores = scores.view(b, num_beams * v)
        top_s, top_i = torch.topk(scores, 2 * num_beams, dim=1, largest=True, sorted=True)
        next_beam = top_i // v
        next_tok = top_i % v
        nb_scores = torch.zeros(b, num_beams)
        nb_tokens = torch.full((b, num_beams), c.pad_token_id, dtype=torch.long)
        nb_index = torch.zeros(b, num_beams, dtype=torch.long)
        for bi in range(b):
            if done[bi]:
                continue
            k = 0
            for rank in range(2 * num_beams):
                tok = int(next_tok[bi, rank])
                src = bi * num_beams + int(next_beam[bi, rank])
                if tok == eos:
                    if rank >= num_beams:
                        continue
                    hyps[bi].add(seq[src].tolist(), float(top_s[bi, rank]))
                else:
                    nb_scores[bi, k] = top_s[bi, rank]
                    nb_tokens[bi, k] = tok
                    nb_index[bi, k] = src
                    k += 1
                if k == num_beams:
                    break
            done[bi] = done[bi] or hyps[bi].is_done(float(top_s[bi].max()), cur + 1)
        beam_scores = nb_scores.view(-1)
        idx = nb_index.view(-1)
        seq = torch.cat([seq[idx], nb_tokens.view(-1, 1)], dim=1)
        sk, sv = sk.index_select(1, idx), sv.index_select(1, idx)
        if all(done) or seq.shape[1] >= max_length:
            break
    for bi in range(b):
        if done[bi]:
            continue
        for j in range(num_beams):
            r = bi * num_beams + j
            hyps[bi].add(seq[r].tolist(), float(beam_scores[r]))
    best, best_scores = [], []
    for h in hyps:
        s, hyp = sorted(h.beams, key=lambda x: x[0])[-1]
        best.append(hyp)
        best_scores.append(s)
    width = min(max(len(h) for h in best) + 1, max_length)
    out = torch.full((b, width), c.pad_token_id, dtype=torch.long)
    for i, h in enumerate(best):
        out[i, :len(h)] = torch.tensor(h)
        if len(h) < width:
            out[i, len(h)] = eos
    return out, best_scores
