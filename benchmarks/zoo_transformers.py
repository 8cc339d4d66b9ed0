"""The zoo's transformers, written by hand: BERT-base (Devlin et al. 2019) and GPT-2 small
(Radford et al. 2019), module for module as Hugging Face's BertModel and GPT2LMHeadModel (so the
parameter counts equal theirs), with attention written out as matmul/softmax.

Weights use torch's default initialization (GPT-2's embedding gets its own N(0, 0.02), since the
tied LM head multiplies by it); LayerNorm affine parameters are randomized so they are not the
identity a pass could get away with dropping.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SEED = 0
SEQ_LEN = 128
BERT_VOCAB = 30522
GPT2_VOCAB = 50257

Built = tuple[nn.Module, tuple[Tensor, ...]]


def _randomize_layernorms(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)  # (b, heads, t, head_dim)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).contiguous().view(b, t, h * d)


# ---------------------------------------------------------------------------------------------
# BERT-base
# ---------------------------------------------------------------------------------------------

class BertLayer(nn.Module):
    """Post-LN encoder layer: attention with additive mask, residual+LN, GELU FFN, residual+LN."""

    def __init__(self, d: int = 768, heads: int = 12, ffn: int = 3072, eps: float = 1e-12):
        super().__init__()
        self.heads = heads
        self.sqrt_dk = math.sqrt(d // heads)  # a Python float: a constant in the exported graph
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = (_split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_dk + mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        attn = self.attn_out(_merge_heads(torch.matmul(probs, v)))
        x = self.attn_norm(x + self.dropout(attn))
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # exact (erf) GELU, as BERT uses
        return self.ffn_norm(x + self.dropout(h))


class BertBase(nn.Module):
    """BERT encoder: token + position + segment embeddings and LN, layers, tanh pooler on [CLS]."""

    input_names = ("input_ids", "token_type_ids", "attention_mask")
    output_names = ("last_hidden_state", "pooler_output")

    def __init__(self, layers: int = 12, vocab: int = BERT_VOCAB, d: int = 768, max_pos: int = 512):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.position = nn.Embedding(max_pos, d)
        self.segment = nn.Embedding(2, d)
        self.embed_norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList(BertLayer(d) for _ in range(layers))
        self.pooler = nn.Linear(d, d)
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0), persistent=False)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor
                ) -> tuple[Tensor, Tensor]:
        pos = self.position_ids[:, : input_ids.shape[1]]
        x = self.word(input_ids) + self.position(pos) + self.segment(token_type_ids)
        x = self.dropout(self.embed_norm(x))
        # (b, 1, 1, t) additive mask: 0 where attended, -10000 on padding (BERT's own constant)
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


def bert_inputs(seed: int = SEED, seq: int = SEQ_LEN) -> tuple[Tensor, ...]:
    """Token ids, segment ids (sentence A then B) and a padding mask, as a tokenizer gives them.

    The seed that builds the model gives an even split and the last eighth padded; other seeds
    draw the split and the padding length.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, BERT_VOCAB, (1, seq), generator=g)
    split, used = seq // 2, seq - seq // 8
    if seed != SEED:
        split = int(torch.randint(1, seq, (1,), generator=g))
        used = int(torch.randint(1, seq + 1, (1,), generator=g))
    segments = (torch.arange(seq) >= split).long().unsqueeze(0)
    mask = (torch.arange(seq) < used).long().unsqueeze(0)
    return ids, segments, mask


def bert_base(layers: int = 12, seq: int = SEQ_LEN) -> Built:
    """BERT-base uncased (12 layers, d 768, 12 heads, FFN 3072, GELU, with mask); 109.5M params."""
    torch.manual_seed(SEED)
    model = BertBase(layers)
    _randomize_layernorms(model)
    return model.eval(), bert_inputs(SEED, seq)


# ---------------------------------------------------------------------------------------------
# GPT-2 small
# ---------------------------------------------------------------------------------------------

def gelu_tanh(x: Tensor) -> Tensor:
    """GPT-2's GELU, written out with tanh as the original code (and HF's gelu_new) does."""
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))
    return 0.5 * x * (1.0 + torch.tanh(inner))


class GPT2Block(nn.Module):
    """Pre-LN decoder block: LN, causal attention (fused QKV), residual, then LN, MLP, residual."""

    def __init__(self, d: int = 768, heads: int = 12, max_pos: int = 1024) -> None:
        super().__init__()
        self.heads = heads
        self.sqrt_dk = math.sqrt(d // heads)
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.c_attn = nn.Linear(d, 3 * d)
        self.attn_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(0.1)
        causal = torch.tril(torch.ones(max_pos, max_pos, dtype=torch.bool))
        self.register_buffer("causal", causal.view(1, 1, max_pos, max_pos), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        t, d = x.shape[1], x.shape[2]
        qkv = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (_split_heads(p, self.heads) for p in qkv)
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_dk
        # HF masks with the dtype's most negative finite value rather than -inf: no NaN rows ever
        scores = torch.where(self.causal[:, :, :t, :t], scores, torch.finfo(scores.dtype).min)
        probs = self.dropout(torch.softmax(scores, dim=-1))
        x = x + self.dropout(self.attn_proj(_merge_heads(torch.matmul(probs, v))))
        return x + self.dropout(self.mlp_proj(gelu_tanh(self.c_fc(self.ln_2(x)))))


class GPT2Small(nn.Module):
    """GPT-2 small: token + learned position embeddings, decoder blocks, final LN, tied LM head."""

    input_names = ("input_ids",)
    output_names = ("logits",)

    def __init__(self, layers: int = 12, vocab: int = GPT2_VOCAB, d: int = 768,
                 max_pos: int = 1024) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_pos, d)
        self.dropout = nn.Dropout(0.1)
        self.blocks = nn.ModuleList(GPT2Block(d, max_pos=max_pos) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0), persistent=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        pos = self.position_ids[:, : input_ids.shape[1]]
        x = self.dropout(self.wte(input_ids) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        return torch.matmul(self.ln_f(x), self.wte.weight.t())  # the LM head shares the embedding


def gpt2_inputs(seed: int = SEED, seq: int = SEQ_LEN) -> tuple[Tensor, ...]:
    """Uniformly random token ids over GPT-2's vocabulary."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, GPT2_VOCAB, (1, seq), generator=g),)


def gpt2_small(layers: int = 12, seq: int = SEQ_LEN) -> Built:
    """GPT-2 small (12 blocks, d 768, 12 heads, GELU tanh, causal, tied LM head); 124.4M params."""
    torch.manual_seed(SEED)
    model = GPT2Small(layers)
    with torch.no_grad():
        model.wte.weight.normal_(0.0, 0.02)  # GPT-2's init: keeps the tied head's logits O(1)
    _randomize_layernorms(model)
    return model.eval(), gpt2_inputs(SEED, seq)
