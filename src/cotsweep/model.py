"""A decoder-only transformer: depth, width, heads, MLP ratio, positional encoding.

Pre-LayerNorm blocks, causal attention through torch's
``scaled_dot_product_attention``, GELU MLP. The read-in is a token embedding
(``spec.vocab_size``) or, for tasks that read vectors (function learning), a
linear map of ``spec.in_dim`` floats; the read-out is a linear map to
``spec.out_dim`` (the vocabulary by default), weight-tied to the token
embedding unless ``tie_readout`` is off, with a bias when ``readout_bias``.

Positional encodings: ``learned`` (a table), ``sinusoidal`` (fixed, added at
the input), ``rope`` (rotary, applied to queries and keys in every layer) and
``none`` (NoPE: the causal mask alone carries order).

Greedy decoding (chain-of-thought evaluation) keeps each layer's keys and
values in a :class:`KVCache`, so each new token costs one position's forward
pass instead of the whole prefix again: O(T) per token, not O(T^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cotsweep.config import PosEncoding


@dataclass
class GPTConfig:
    seq_len: int
    depth: int = 2
    width: int = 128
    heads: int = 4
    mlp_ratio: int = 4
    pos_encoding: PosEncoding = PosEncoding.learned
    dropout: float = 0.0
    vocab_size: int = 0  # > 0: token read-in
    in_dim: int = 0  # > 0: vector read-in
    out_dim: int = 0  # 0: the vocabulary
    tie_readout: bool = True  # token read-in and read-out share weights
    readout_bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


def rope_tables(
    T: int, head_dim: int, device, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    ang = torch.outer(torch.arange(T, device=device).float(), inv)  # (T, hd/2)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, h, T, hd/2)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def sinusoids(T: int, width: int) -> torch.Tensor:
    pos = torch.arange(T).float()[:, None]
    div = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    pe = torch.zeros(T, width)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: width // 2])
    return pe


class KVCache:
    """Every layer's keys and values of the positions read so far, for greedy decoding."""

    def __init__(self, depth: int):
        self.keys: list[torch.Tensor | None] = [None] * depth
        self.values: list[torch.Tensor | None] = [None] * depth
        self.length = 0  # positions cached: the next position's index

    def extend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, h, T, hd) keys and values; returns all of them."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class Attention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c = c
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)
        self.drop = nn.Dropout(c.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = (
            self.qkv(x).view(B, T, 3, self.c.heads, self.c.head_dim).permute(2, 0, 3, 1, 4)
        )  # (B, h, T, hd) each
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        p = self.c.dropout if self.training else 0.0
        past = cache.length if cache is not None else 0
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        elif T == 1:  # one new position attends to every cached one: no mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # new position i sees keys 0 .. past + i
            seen = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=seen, dropout_p=p)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, d)))  # y: (B, h, T, hd)


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.width), nn.LayerNorm(c.width)
        self.attn = Attention(c)
        self.mlp = nn.Sequential(
            nn.Linear(c.width, c.mlp_ratio * c.width),
            nn.GELU(),
            nn.Linear(c.mlp_ratio * c.width, c.width),
            nn.Dropout(c.dropout),
        )

    def forward(self, x, rope, cache: KVCache | None = None, layer: int = 0):
        x = x + self.attn(self.ln1(x), rope, cache, layer)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c = c
        pe = PosEncoding(c.pos_encoding)
        self.read_in = (
            nn.Embedding(c.vocab_size, c.width) if c.vocab_size else nn.Linear(c.in_dim, c.width)
        )
        self.pos = nn.Embedding(c.seq_len, c.width) if pe == PosEncoding.learned else None
        self.register_buffer(
            "sin_pe",
            sinusoids(c.seq_len, c.width) if pe == PosEncoding.sinusoidal else None,
            persistent=False,
        )
        self.use_rope = pe == PosEncoding.rope
        if self.use_rope:
            cos, sin = rope_tables(c.seq_len, c.head_dim, "cpu")
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.ln_f = nn.LayerNorm(c.width)
        out_dim = c.out_dim or c.vocab_size
        self.read_out = nn.Linear(c.width, out_dim, bias=c.readout_bias)
        if c.tie_readout and c.vocab_size and out_dim == c.vocab_size:
            self.read_out.weight = self.read_in.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.depth))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x: (B, T) token ids or (B, T, in_dim) floats -> (B, T, out_dim).

        With ``cache``, ``x`` holds the positions after those already in the
        cache, and their keys and values are added to it.
        """
        start = cache.length if cache is not None else 0
        end = start + x.shape[1]
        if end > self.c.seq_len:
            raise ValueError(
                f"sequence of {end} tokens is longer than the model's context ({self.c.seq_len})"
            )
        h = self.read_in(x)  # (B, T, d)
        if self.pos is not None:
            h = h + self.pos.weight[start:end]
        elif self.sin_pe is not None:
            h = h + self.sin_pe[start:end]
        rope = (self.rope_cos[start:end], self.rope_sin[start:end]) if self.use_rope else None
        h = self.drop(h)
        for i, block in enumerate(self.blocks):
            h = block(h, rope, cache, i)
        if cache is not None:
            cache.length = end
        return self.read_out(self.ln_f(h))  # (B, T, out_dim)

    @torch.no_grad()
    def greedy(self, prefix: torch.Tensor, steps: int) -> torch.Tensor:
        """The ``steps`` tokens that follow ``prefix`` (B, T), each the argmax of the last one's
        output; the prefix is read once and every new token alone, against cached keys and values.
        """
        cache = KVCache(len(self.blocks))
        nxt = self(prefix, cache)[:, -1].argmax(-1, keepdim=True)
        out = [nxt]
        for _ in range(steps - 1):
            nxt = self(nxt, cache)[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
        return torch.cat(out, dim=1)  # (B, steps)

    def flops_per_token(self, T: int) -> int:
        """Training FLOPs per token: 6N plus attention (the PaLM appendix estimate)."""
        n = sum(p.numel() for n_, p in self.named_parameters() if not n_.startswith("pos"))
        return 6 * n + 12 * self.c.depth * self.c.width * T
