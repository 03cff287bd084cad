"""BERT encoders used by BLIP (LAVIS med.py) and BLIP-2 (LAVIS Qformer.py).

Post-LN BERT, LayerNorm eps 1e-12, exact GELU, absolute positions, no token-type embeddings.
Attention masks are additive ``(1 - m) * -10000``.

* ``MedBertModel`` (BLIP ``text_encoder``): cross-attention (K/V from the image tokens) in every
  layer, used only in multimodal mode.
* ``QFormer`` (BLIP-2 ``Qformer``: ``bert`` + MLM ``cls`` head): cross-attention every
  ``cross_attention_freq``-th layer, applied to the query positions only; query positions use
  ``intermediate_query`` / ``output_query`` FFNs, text positions ``intermediate`` / ``output``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def extended_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    m = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * -10000.0


class BertEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, max_positions: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.register_buffer("position_ids", torch.arange(max_positions).expand((1, -1)).clone(), persistent=True)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """word + position embeddings, before LayerNorm."""
        seq = input_ids.size(1)
        pos = self.position_ids[:, :seq]
        return self.word_embeddings(input_ids) + self.position_embeddings(pos)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.embed_text(input_ids))


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_width: int):
        super().__init__()
        self.num_heads = heads
        self.head_size = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self._split(self.query(hidden))
        k = self._split(self.key(kv))
        v = self._split(self.value(kv))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        scores = scores + mask
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        B, L = ctx.shape[0], ctx.shape[1]
        return ctx.view(B, L, self.num_heads * self.head_size)


class BertOutput(nn.Module):
    """dense (inter -> hidden), + residual, LayerNorm: after the FFN and, with inter = hidden,
    after attention (LAVIS's BertSelfOutput)."""

    def __init__(self, hidden: int, inter: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inter, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_width: int, eps: float):
        super().__init__()
        self.self = BertSelfAttention(hidden, heads, kv_width)
        self.output = BertOutput(hidden, hidden, eps)  # LAVIS BertSelfOutput: the same layers

    def forward(self, hidden: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, kv, mask), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, inter: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class TextEncoder(nn.Module):
    """Text-only pass of BLIP's text encoder and of the Q-Former: ``embeddings``, then each of
    ``encoder.layer`` in text mode (self-attention and FFN, no cross-attention)."""

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids)
        mask = extended_mask(attention_mask, h.dtype)
        for layer in self.encoder.layer:
            h = layer.forward_text(h, mask)
        return h


# --------------------------------------------------------------------------- BLIP (med.py)

class MedBertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, encoder_width: int, eps: float):
        super().__init__()
        self.attention = BertAttention(hidden, heads, hidden, eps)
        self.crossattention = BertAttention(hidden, heads, encoder_width, eps)
        self.intermediate = BertIntermediate(hidden, inter)
        self.output = BertOutput(hidden, inter, eps)

    def forward_text(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(h, h, mask)
        return self.output(self.intermediate(a), a)

    def forward_multimodal(self, h: torch.Tensor, mask: torch.Tensor, enc: torch.Tensor,
                           enc_mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(h, h, mask)
        a = self.crossattention(a, enc, enc_mask)
        return self.output(self.intermediate(a), a)


class MedBertEncoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, inter: int, encoder_width: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList([MedBertLayer(hidden, heads, inter, encoder_width, eps) for _ in range(layers)])


class MedBertModel(TextEncoder):
    """LAVIS med.py ``BertModel(add_pooling_layer=False)`` (BLIP ``text_encoder``)."""

    def __init__(self, vocab_size: int = 30524, hidden: int = 768, layers: int = 12, heads: int = 12,
                 inter: int = 3072, encoder_width: int = 768, max_positions: int = 512, eps: float = 1e-12):
        super().__init__()
        self.hidden = hidden
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_positions, eps)
        self.encoder = MedBertEncoder(layers, hidden, heads, inter, encoder_width, eps)

    def forward_multimodal(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids)
        mask = extended_mask(attention_mask, h.dtype)
        # image attention mask is all ones -> additive zero
        enc_mask = torch.zeros(encoder_hidden_states.shape[0], 1, 1, encoder_hidden_states.shape[1],
                               dtype=h.dtype, device=h.device)
        for layer in self.encoder.layer:
            h = layer.forward_multimodal(h, mask, encoder_hidden_states, enc_mask)
        return h


# --------------------------------------------------------------------------- BLIP-2 (Qformer.py)

class NoCrossAttention(nn.Module):
    """Stand-in for layers without cross-attention (holds no parameters, so no keys)."""

    def forward(self, hidden: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden


class QFormerLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int, encoder_width: int, eps: float, has_cross: bool):
        super().__init__()
        self.attention = BertAttention(hidden, heads, hidden, eps)
        if has_cross:
            self.crossattention = BertAttention(hidden, heads, encoder_width, eps)
        else:
            self.crossattention = NoCrossAttention()
        self.intermediate = BertIntermediate(hidden, inter)
        self.output = BertOutput(hidden, inter, eps)
        self.intermediate_query = BertIntermediate(hidden, inter)
        self.output_query = BertOutput(hidden, inter, eps)

    def forward_text(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(h, h, mask)
        return self.output(self.intermediate(a), a)

    def forward_query(self, h: torch.Tensor, mask: torch.Tensor, enc: torch.Tensor, enc_mask: torch.Tensor,
                      query_length: int) -> torch.Tensor:
        a = self.attention(h, h, mask)
        q = a[:, :query_length]
        q = self.crossattention(q, enc, enc_mask)
        out = self.output_query(self.intermediate_query(q), q)
        if a.size(1) > query_length:
            t = a[:, query_length:]
            out = torch.cat([out, self.output(self.intermediate(t), t)], dim=1)
        return out


class QFormerEncoder(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, inter: int, encoder_width: int, eps: float,
                 cross_attention_freq: int):
        super().__init__()
        self.layer = nn.ModuleList([
            QFormerLayer(hidden, heads, inter, encoder_width, eps, i % cross_attention_freq == 0)
            for i in range(layers)
        ])


class QFormerBert(TextEncoder):
    def __init__(self, vocab_size: int, hidden: int, layers: int, heads: int, inter: int, encoder_width: int,
                 max_positions: int, eps: float, cross_attention_freq: int):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_positions, eps)
        self.encoder = QFormerEncoder(layers, hidden, heads, inter, encoder_width, eps, cross_attention_freq)

    def forward_query(self, query_embeds: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Query-only pass (image mode): returns the query states [B,Q,D]."""
        h = self.embeddings.LayerNorm(query_embeds)
        B, Q = h.shape[0], h.shape[1]
        mask = torch.zeros(B, 1, 1, Q, dtype=h.dtype, device=h.device)
        enc_mask = torch.zeros(B, 1, 1, encoder_hidden_states.shape[1], dtype=h.dtype, device=h.device)
        for layer in self.encoder.layer:
            h = layer.forward_query(h, mask, encoder_hidden_states, enc_mask, Q)
        return h

    def forward_joint(self, query_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Queries + text with cross-attention (multimodal mode): returns all states [B,Q+L,D]."""
        Q = query_embeds.shape[1]
        h = torch.cat([query_embeds, self.embeddings.embed_text(input_ids)], dim=1)
        h = self.embeddings.LayerNorm(h)
        B = h.shape[0]
        full = torch.cat([torch.ones(B, Q, dtype=attention_mask.dtype, device=attention_mask.device),
                          attention_mask], dim=1)
        mask = extended_mask(full, h.dtype)
        enc_mask = torch.zeros(B, 1, 1, encoder_hidden_states.shape[1], dtype=h.dtype, device=h.device)
        for layer in self.encoder.layer:
            h = layer.forward_query(h, mask, encoder_hidden_states, enc_mask, Q)
        return h


class PredictionHeadTransform(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class LMPredictionHead(nn.Module):
    """MLM head kept only so that the checkpoint layout matches (not used for features).
    ``decoder.weight`` is tied to the word embeddings and ``decoder.bias`` to ``bias``."""

    def __init__(self, vocab_size: int, hidden: int, eps: float, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = PredictionHeadTransform(hidden, eps)
        self.decoder = nn.Linear(hidden, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.decoder.weight = word_embeddings.weight
        self.decoder.bias = self.bias


class OnlyMLMHead(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, eps: float, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LMPredictionHead(vocab_size, hidden, eps, word_embeddings)


class QFormer(nn.Module):
    """LAVIS ``BertLMHeadModel`` used as the BLIP-2 Q-Former (``Qformer.bert`` + ``Qformer.cls``)."""

    def __init__(self, vocab_size: int = 30523, hidden: int = 768, layers: int = 12, heads: int = 12,
                 inter: int = 3072, encoder_width: int = 1408, max_positions: int = 512, eps: float = 1e-12,
                 cross_attention_freq: int = 2):
        super().__init__()
        self.bert = QFormerBert(vocab_size, hidden, layers, heads, inter, encoder_width, max_positions, eps,
                                cross_attention_freq)
        self.cls = OnlyMLMHead(vocab_size, hidden, eps, self.bert.embeddings.word_embeddings)
