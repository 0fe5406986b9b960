"""An independent implementation of the built-in tiny-gpt2, written from SPEC.md (not importing lmstep), that
speaks the checker's JSON-lines protocol on stdin/stdout — the kind of program a C++/Rust engine would be.

    python tests/external_impl.py [--bug NAME]

Weights are regenerated from SPEC.md §9, the model is computed token by token with a plain KV cache (§4, §6),
the sampler is tests/reference_sampler.py. ``--bug`` injects a failure for the negative controls:
crash, hang, garbage, wrong-shape, position (decode uses position + 1), noise (logits perturbed by 1e-3).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_sampler import reference_sample  # noqa: E402

V, C, L, H, F, NPOS, EPS, SEED = 256, 64, 2, 4, 256, 4096, 1e-5, 20261126
D = C // H
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def weights() -> dict[str, np.ndarray]:
    shapes = [("wte", (V, C), 1.0, 0.0), ("wpe", (NPOS, C), 1.0, 0.0)]
    for i in range(L):
        g = lambda gain, n_in: gain * math.sqrt(3.0 / n_in)  # noqa: E731
        shapes += [
            (f"{i}.ln_1_w", (C,), 0.1, 1.0),
            (f"{i}.ln_1_b", (C,), 0.1, 0.0),
            (f"{i}.attn_w", (C, 3 * C), g(1.5, C), 0.0),
            (f"{i}.attn_b", (3 * C,), 0.1, 0.0),
            (f"{i}.proj_w", (C, C), g(3.0, C), 0.0),
            (f"{i}.proj_b", (C,), 0.1, 0.0),
            (f"{i}.ln_2_w", (C,), 0.1, 1.0),
            (f"{i}.ln_2_b", (C,), 0.1, 0.0),
            (f"{i}.fc_w", (C, F), g(1.5, C), 0.0),
            (f"{i}.fc_b", (F,), 0.1, 0.0),
            (f"{i}.mlp_w", (F, C), g(3.0, F), 0.0),
            (f"{i}.mlp_b", (C,), 0.1, 0.0),
        ]
    shapes += [("ln_f_w", (C,), 0.1, 1.0), ("ln_f_b", (C,), 0.1, 0.0)]
    key, offset, out = mix(np.array([SEED], np.uint64))[0], 0, {}
    with np.errstate(over="ignore"):
        for name, shape, a, b in shapes:
            n = int(np.prod(shape))
            bits = mix(key + np.uint64(offset) + np.arange(n, dtype=np.uint64)) >> np.uint64(40)
            u = (bits.astype(np.float64) * (2 / 2**24) - 1).astype(np.float32)
            out[name] = ((u * np.float32(a)).astype(np.float32) + np.float32(b)).reshape(shape)
            offset += n
    return out


W = weights()


def layer_norm(x, w, b):
    mu = x.mean(dtype=np.float32)
    var = ((x - mu) * (x - mu)).mean(dtype=np.float32)
    return (x - mu) / np.sqrt(var + np.float32(EPS)) * w + b


def gelu(x):
    return (
        np.float32(0.5)
        * x
        * (np.float32(1) + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x**3)))
    )


def forward_one(cache, token: int, pos: int) -> np.ndarray:
    """One token through the network, appending to ``cache`` (a list per layer of (keys, values) lists)."""
    x = W["wte"][token] + W["wpe"][pos]
    for i in range(L):
        qkv = layer_norm(x, W[f"{i}.ln_1_w"], W[f"{i}.ln_1_b"]) @ W[f"{i}.attn_w"] + W[f"{i}.attn_b"]
        q, k, v = qkv[:C].reshape(H, D), qkv[C : 2 * C].reshape(H, D), qkv[2 * C :].reshape(H, D)
        cache[i][0].append(k)
        cache[i][1].append(v)
        keys, vals = np.stack(cache[i][0], 1), np.stack(cache[i][1], 1)  # [H, S, D]
        scores = np.einsum("hd,hsd->hs", q, keys) * np.float32(D**-0.5)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        att = np.einsum("hs,hsd->hd", p / p.sum(-1, keepdims=True), vals).reshape(C)
        x = x + att @ W[f"{i}.proj_w"] + W[f"{i}.proj_b"]
        x = (
            x
            + gelu(layer_norm(x, W[f"{i}.ln_2_w"], W[f"{i}.ln_2_b"]) @ W[f"{i}.fc_w"] + W[f"{i}.fc_b"])
            @ W[f"{i}.mlp_w"]
            + W[f"{i}.mlp_b"]
        )
    return (layer_norm(x, W["ln_f_w"], W["ln_f_b"]) @ W["wte"].T).astype(np.float32)


def enc(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, "<f4")
    return {"dtype": "f32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def state_arrays(sess) -> dict:
    out = {}
    for i, (ks, vs) in enumerate(sess["cache"]):
        for name, rows in (("key", ks), ("value", vs)):
            arr = np.stack(rows, 1)[None] if rows else np.zeros((1, H, 0, D), np.float32)
            out[f"past_key_values.{i}.{name}"] = enc(arr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bug", default="")
    bug = ap.parse_args().bug
    sessions, counter = {}, 0  # greedy sampling: check it with a model loaded at temperature 0
    for line in sys.stdin:
        req = json.loads(line)
        op, reply = req["op"], {"id": req.get("id"), "ok": True}
        if op == "hello":
            print("external_impl: hello", req.get("model", {}).get("name"), file=sys.stderr, flush=True)
            reply |= {"vocab_size": V, "capabilities": ["fork", "state"], "name": "external numpy gpt2"}
        elif op == "bye":
            return
        elif bug == "crash" and op in ("run", "decode"):
            print("external_impl: segmentation fault (simulated)", file=sys.stderr, flush=True)
            sys.exit(139)
        elif bug == "hang" and op in ("run", "decode"):
            time.sleep(3600)
        elif bug == "garbage" and op in ("run", "decode"):
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
            continue
        elif op in ("init", "fork"):
            counter += 1
            src = sessions[req["handle"]] if op == "fork" else {"pos": 0, "cache": [([], []) for _ in range(L)]}
            sessions[counter] = {"pos": src["pos"], "cache": [(list(k), list(v)) for k, v in src["cache"]]}
            reply["handle"] = counter
        elif op == "run":
            sess = sessions[req["handle"]]
            rows = []
            for t in req["tokens"]:
                rows.append(forward_one(sess["cache"], t, sess["pos"]))
                sess["pos"] += 1
            logits = np.stack(rows)
            if bug == "wrong-shape":
                logits = logits[:, :-1]
            reply |= {"handle": req["handle"], "logits": enc(logits)}
        elif op == "decode":
            sess = sessions[req["handle"]]
            rand = struct.unpack("<f", struct.pack("<I", int(req["rand"]["f32"], 16)))[0]
            z = forward_one(sess["cache"], req["token"], sess["pos"] + (1 if bug == "position" else 0))
            if bug == "noise":
                z = z + np.float32(1e-3)
            sess["pos"] += 1
            token = reference_sample(z, rand, 0.0, 0, 1.0)
            reply |= {"handle": req["handle"], "logits": enc(z), "token": int(token)}
        elif op == "state":
            reply["arrays"] = state_arrays(sessions[req["handle"]])
        else:
            reply = {"id": req.get("id"), "ok": False, "error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
