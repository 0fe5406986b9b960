"""reverse: ``BOS x_1 .. x_n SEP`` -> ``x_n .. x_1 EOS`` (a 2-layer GPT-2 of hard heads and lookup tables).

Positions: BOS at 0, x_i at i, SEP at s = n + 1, the output y_j at s + j. At position t >= s the next token is
the input at position m = 2s - t - 1 (t = s gives m = n, the last input; each step moves one left), and when m
reaches 0 (BOS) the answer is EOS. So the model must know s at every position, compute m from (s, t), and
copy the token at m: RASP's ``reverse`` (Weiss et al. 2021: ``select(indices, length - indices - 1, ==)``
then ``aggregate``), with SEP's position playing ``length``.

Residual stream (every block one-hot; kit.py):
    tok[V]       the input token; at the end, the output token the logits read
    pos[2N+2]    the position t (wpe rows are one-hot)
    sep[N+2]     s, the position of SEP, or 0 while no SEP is visible (layer 1's head)
    tgt[N+2]     m = 2s - t - 1 in 0..N, or ``none`` (index N + 1) where there is no target (layer 1's MLP)
    out[V]       the token at m, BOS mapped to EOS (layer 2's head)
    zero         never written

Layer 1, head: query constant; key 2 HARD on SEP, HARD on BOS: it attends to SEP if visible, else to BOS (at
  position 0); its value copies that key's ``pos`` one-hot into ``sep``.
Layer 1, MLP: one switch per valid pair (s, t), 1 <= s <= N + 1, s <= t <= 2s - 1: relu(sep_s + pos_t - 1) is
  1 exactly for that pair and writes tgt_{2s-t-1}; ``tgt_none`` = 1 - (sum of the pair units), from a bias.
Layer 2, head: query HARD sqrt(C) tgt_j on dimension j, key pos_j on dimension j: the score is HARD at the key
  whose position is m and 0 at every other, so the head copies exactly that position's token (value: tok_v ->
  out_v for symbols, tok_BOS -> out_EOS).
Layer 2, MLP: switches move ``out`` into ``tok`` and cancel the input token there: tok = one-hot of the answer.
Final LayerNorm reads tok only; the tied unembedding wte^T turns it into logits.
"""

from __future__ import annotations

import math

import numpy as np

from lmstep.spec import gpt2

from .kit import EPS, HARD, SWITCH, Stream, gpt2_zeros, ln_sigma, to_float32, zero_sum_reads

FINAL_SCALE = 8.0


def expected(xs: list[int]) -> list[int]:
    return xs[::-1]


def pairs(max_len: int) -> list[tuple[int, int]]:
    """(s, t) with a target: SEP at s = n + 1 for n <= max_len, output positions t = s .. 2s - 1."""
    return [(sep, t) for sep in range(1, max_len + 2) for t in range(sep, 2 * sep)]


def build(k: int, max_len: int) -> tuple[gpt2.Config, dict[str, np.ndarray], Stream]:
    V = k + 3
    BOS, SEP, EOS = k, k + 1, k + 2
    n_pos = 2 * max_len + 2
    NONE = max_len + 1  # index of tgt's "no target" dimension
    s = Stream([("tok", V), ("pos", n_pos), ("sep", max_len + 2), ("tgt", max_len + 2), ("out", V)])
    table = pairs(max_len)
    C, F = s.width, max(len(table), 2 * V)
    cfg = gpt2.Config(vocab_size=V, n_embd=C, n_layer=2, n_head=1, n_positions=n_pos, n_inner=F, layer_norm_epsilon=EPS)
    p = gpt2_zeros(cfg)
    K, rootC = SWITCH, math.sqrt(C)
    tok = lambda v: s.at("tok", v)  # noqa: E731
    q, kk, vv = 0, C, 2 * C

    for v in range(V):
        p["wte"][v, tok(v)] = 1.0
    for t in range(n_pos):
        p["wpe"][t, s.at("pos", t)] = 1.0

    # -- layer 1: find SEP, compute the target position ------------------------------------------------------
    L = "layers.0."
    p[L + "ln_1_weight"][:] = ln_sigma(2, C)  # tok, pos
    p[L + "c_attn_bias"][q + 0] = HARD * rootC
    p[L + "c_attn_weight"][tok(SEP), kk + 0] = 2.0
    p[L + "c_attn_weight"][tok(BOS), kk + 0] = 1.0
    for j in range(max_len + 2):
        p[L + "c_attn_weight"][s.at("pos", j), vv + s.at("sep", j)] = 1.0
        p[L + "attn_c_proj_weight"][s.at("sep", j), s.at("sep", j)] = 1.0
    p[L + "ln_2_weight"][:] = ln_sigma(3, C)  # tok, pos, sep
    for unit, (sep, t) in enumerate(table):
        p[L + "c_fc_weight"][s.at("sep", sep), unit] = K
        p[L + "c_fc_weight"][s.at("pos", t), unit] = K
        p[L + "c_fc_bias"][unit] = -K
        p[L + "mlp_c_proj_weight"][unit, s.at("tgt", 2 * sep - t - 1)] = 1.0 / K
        p[L + "mlp_c_proj_weight"][unit, s.at("tgt", NONE)] = -1.0 / K
    p[L + "mlp_c_proj_bias"][s.at("tgt", NONE)] = 1.0

    # -- layer 2: copy the token at the target position -----------------------------------------------------
    L = "layers.1."
    p[L + "ln_1_weight"][:] = ln_sigma(4, C)  # tok, pos, sep, tgt
    for j in range(max_len + 1):  # query/key dimension j <-> position j
        p[L + "c_attn_weight"][s.at("tgt", j), q + j] = HARD * rootC
        p[L + "c_attn_weight"][s.at("pos", j), kk + j] = 1.0
    for v in range(k):
        p[L + "c_attn_weight"][tok(v), vv + s.at("out", v)] = 1.0
    p[L + "c_attn_weight"][tok(BOS), vv + s.at("out", EOS)] = 1.0
    for u in range(V):
        p[L + "attn_c_proj_weight"][s.at("out", u), s.at("out", u)] = 1.0
    p[L + "ln_2_weight"][:] = ln_sigma(5, C)  # plus out, one-hot wherever there is a target
    for u in range(V):  # unit u: cancel tok_u; unit V + u: move out_u to tok_u
        p[L + "c_fc_weight"][tok(u), u] = K
        p[L + "mlp_c_proj_weight"][u, tok(u)] = -1.0 / K
        p[L + "c_fc_weight"][s.at("out", u), V + u] = K
        p[L + "mlp_c_proj_weight"][V + u, tok(u)] = 1.0 / K

    for i in range(cfg.n_layer):
        for name in ("c_attn_weight", "c_fc_weight"):
            p[f"layers.{i}.{name}"] = zero_sum_reads(p[f"layers.{i}.{name}"], s)
    p["ln_f_weight"][s.span("tok")] = FINAL_SCALE
    return cfg, to_float32(p), s
