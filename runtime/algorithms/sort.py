"""sort: ``BOS x_1 .. x_n SEP`` -> ``sorted(x) EOS`` for symbols 0 .. k-1, by counting (a 2-layer GPT-2).

The idea (counting, like the histogram ``make_hist`` of RASP, Weiss et al. 2021): the next output
is the smallest symbol of which the prompt holds more copies than the output so far. So at each position
after SEP the model needs, per symbol v, ``remaining(v) = #v in the prompt - #v already output``, and then the
first v with remaining(v) > 0 (EOS when there is none). The outputs are emitted in order, so remaining counts
are all it needs: no previous-token lookup, no positions (wpe is all zeros).

Residual stream (kit.Stream; every block but ``rem`` is one-hot, see kit.py):
    tok[V]      the input token (wte rows are one-hot); at the end, the output scores the logits read
    flag[2]     after = a SEP is at or before this position; before = not (layer 1's head)
    io[2k+1]    in_v = a prompt symbol v, out_v = an output symbol v, none = BOS/SEP/EOS (layer 1's MLP)
    rem[k]      remaining(v) / (t + 1) (layer 2's head; a number, not one-hot)
    zero        never written (kit.zero_sum_reads)

Layer 1, head: query constant; key 2 HARD on SEP, HARD on BOS, 0 elsewhere. BOS is always at position 0, so
  the head sees SEP if one is visible, else BOS; its value writes flag = (after, before) = (tok_SEP, tok_BOS).
Layer 1, MLP: per symbol v two switches, in_v = relu(tok_v - after) and out_v = relu(tok_v + after - 1), and
  none = relu(tok_BOS + tok_SEP + tok_EOS): exactly one io dimension is 1 at every position.
Layer 2, head: query 0, so all scores are 0 and attention is uniform over positions 0..t (weights 1/(t+1));
  the value in_v - out_v makes the output remaining(v) / (t + 1), written to rem_v.
Layer 2, MLP: g_v = [remaining(v) > 0] = relu(M a) - relu(M a - 1) with a = rem_v (scaled by SWITCH): once
  remaining(v) >= 1 and t + 1 <= 2 max_len + 2, M a >= 2. It writes the output scores into tok (after
  cancelling the input's one-hot there): score_v = g_v - 2 sum_{u<v} g_u, score_EOS = 1 - 2 sum_u g_u,
  score_BOS = score_SEP = -1. The smallest v with g_v = 1 scores 1 and every other token <= 0; with no
  symbol left EOS scores 1 and the rest <= 0. The input token's one-hot is cancelled by clamped switches
  too, so the scores do not depend on LayerNorm's scale here (which rem moves by up to ~15%).
Final LayerNorm reads tok only (its weight is 0 elsewhere); the tied unembedding wte^T turns tok_v into logit v.
"""

from __future__ import annotations

import math

import numpy as np

from lmstep.spec import gpt2

from .kit import EPS, HARD, SWITCH, Stream, gpt2_zeros, ln_sigma, to_float32, zero_sum_reads

# The LayerNorm scale w / sigma that layer 2's MLP sees ranges over this interval (rem moves sigma; with the
# ln_2 weight set for the three one-hot blocks it is 1 where rem = 0): proofs/algorithm.py proves it.
LAMBDA = (0.8, 1.25)
FINAL_SCALE = 8.0  # ln_f weight on tok, in units of the final sigma: a score gap of 1 becomes a logit gap of ~4+


def expected(xs: list[int]) -> list[int]:
    return sorted(xs)


def build(k: int, max_len: int) -> tuple[gpt2.Config, dict[str, np.ndarray], Stream]:
    """The weights (ours, [in, out]) for symbols 0..k-1 and prompts of up to ``max_len`` symbols."""
    V = k + 3
    BOS, SEP, EOS = k, k + 1, k + 2
    s = Stream([("tok", V), ("flag", 2), ("io", 2 * k + 1), ("rem", k)])
    C, F = s.width, 2 * k + 2 * V
    n_pos = 2 * max_len + 2  # BOS x_1..x_n SEP y_1..y_n: the last decision (EOS) is made at position 2n + 1
    cfg = gpt2.Config(vocab_size=V, n_embd=C, n_layer=2, n_head=1, n_positions=n_pos, n_inner=F, layer_norm_epsilon=EPS)
    p = gpt2_zeros(cfg)
    K, rootC = SWITCH, math.sqrt(C)
    AFTER, BEFORE = s.at("flag", 0), s.at("flag", 1)
    IN, OUT, NONE = (lambda v: s.at("io", v)), (lambda v: s.at("io", k + v)), s.at("io", 2 * k)
    tok = lambda v: s.at("tok", v)  # noqa: E731
    q, kk, vv = 0, C, 2 * C  # column offsets of query, key and value in c_attn ([C, 3C], one head of size C)

    for v in range(V):
        p["wte"][v, tok(v)] = 1.0

    # -- layer 1: where is SEP? ----------------------------------------------------------------------------
    L = "layers.0."
    p[L + "ln_1_weight"][:] = ln_sigma(1, C)  # residual: tok only
    p[L + "c_attn_bias"][q + 0] = HARD * rootC  # q = HARD sqrt(C) e_0, so score = HARD * k_0
    p[L + "c_attn_weight"][tok(SEP), kk + 0] = 2.0
    p[L + "c_attn_weight"][tok(BOS), kk + 0] = 1.0
    p[L + "c_attn_weight"][tok(SEP), vv + AFTER] = 1.0
    p[L + "c_attn_weight"][tok(BOS), vv + BEFORE] = 1.0
    p[L + "attn_c_proj_weight"][AFTER, AFTER] = p[L + "attn_c_proj_weight"][BEFORE, BEFORE] = 1.0
    p[L + "ln_2_weight"][:] = ln_sigma(2, C)  # tok, flag
    for v in range(k):  # unit v: in_v; unit k + v: out_v; unit 2k: none
        p[L + "c_fc_weight"][tok(v), v] = K
        p[L + "c_fc_weight"][AFTER, v] = -K
        p[L + "c_fc_weight"][tok(v), k + v] = K
        p[L + "c_fc_weight"][AFTER, k + v] = K
        p[L + "c_fc_bias"][k + v] = -K
        p[L + "mlp_c_proj_weight"][v, IN(v)] = 1.0 / K
        p[L + "mlp_c_proj_weight"][k + v, OUT(v)] = 1.0 / K
    for t in (BOS, SEP, EOS):
        p[L + "c_fc_weight"][tok(t), 2 * k] = K
    p[L + "mlp_c_proj_weight"][2 * k, NONE] = 1.0 / K

    # -- layer 2: count what remains, emit the smallest -----------------------------------------------------
    L = "layers.1."
    p[L + "ln_1_weight"][:] = ln_sigma(3, C)  # tok, flag, io
    for v in range(k):
        p[L + "c_attn_weight"][IN(v), vv + s.at("rem", v)] = 1.0
        p[L + "c_attn_weight"][OUT(v), vv + s.at("rem", v)] = -1.0
        p[L + "attn_c_proj_weight"][s.at("rem", v), s.at("rem", v)] = 1.0
    p[L + "ln_2_weight"][:] = ln_sigma(3, C)  # plus rem, which moves sigma by a bounded factor (docs/algorithms.md)
    M = 2.0 * (2 * max_len + 2) / LAMBDA[0]  # M * remaining / (t + 1) >= 2 at the smallest LayerNorm scale
    score = np.zeros((k, V))  # d score / d g_v: g_v itself, -2 on every later symbol and on EOS
    for v in range(k):
        score[v, v] = 1.0
        score[v, v + 1 : k] = -2.0
        score[v, EOS] = -2.0
    for v in range(k):  # unit v: relu(K M a), unit k + v: relu(K M a - K); g_v = (unit v - unit k+v) / K
        p[L + "c_fc_weight"][s.at("rem", v), v] = K * M
        p[L + "c_fc_weight"][s.at("rem", v), k + v] = K * M
        p[L + "c_fc_bias"][k + v] = -K
        for u in range(V):
            p[L + "mlp_c_proj_weight"][v, tok(u)] = score[v, u] / K
            p[L + "mlp_c_proj_weight"][k + v, tok(u)] = -score[v, u] / K
    for u in range(V):  # units 2k + 2u, 2k + 2u + 1 cancel the input token's one-hot in tok, clamped like g: the
        # LayerNorm scale lambda here is not 1 (rem moves sigma), so relu(3K lambda) - relu(3K lambda - K) = K
        # (3K: both inputs stay >= 8 (3 lambda - 1) >= 11 for lambda >= 0.8, where GELU is the identity)
        p[L + "c_fc_weight"][tok(u), 2 * k + 2 * u] = 3 * K
        p[L + "c_fc_weight"][tok(u), 2 * k + 2 * u + 1] = 3 * K
        p[L + "c_fc_bias"][2 * k + 2 * u + 1] = -K
        p[L + "mlp_c_proj_weight"][2 * k + 2 * u, tok(u)] = -1.0 / K
        p[L + "mlp_c_proj_weight"][2 * k + 2 * u + 1, tok(u)] = 1.0 / K
    p[L + "mlp_c_proj_bias"][tok(EOS)] = 1.0
    p[L + "mlp_c_proj_bias"][tok(BOS)] = p[L + "mlp_c_proj_bias"][tok(SEP)] = -1.0

    for i in range(cfg.n_layer):
        for name in ("c_attn_weight", "c_fc_weight"):
            p[f"layers.{i}.{name}"] = zero_sum_reads(p[f"layers.{i}.{name}"], s)
    p["ln_f_weight"][s.span("tok")] = FINAL_SCALE
    return cfg, to_float32(p), s
