"""An independent implementation of the three built-in models (tiny-llama, tiny-gpt2, tiny-mamba), written from
SPEC.md (not importing lmstep), that speaks the checker's JSON-lines protocol, version lmstep-impl/2, on
stdin/stdout: the kind of program a C++/Rust engine would be, and the documented example of a full engine.

    python tests/external_impl.py [--bug NAME] [--protocol 1]

Weights are regenerated from SPEC.md §9, every model is computed token by token (§4-§7: a KV cache grown in
place, or Mamba's conv window and SSM state), and tokens are sampled by tests/reference_sampler.py with the
settings each decode carries (protocol 2; ``--protocol 1`` answers as an older program: --model's settings from
the hello). Capabilities: fork, state, batch (sequences run one after another), release. ``--bug`` injects a
failure for the negative controls: crash, hang, garbage, wrong-shape, position (decode uses position + 1), noise
(logits perturbed by 1e-3), top-k (keeps k + 1 tokens), raise (reports an error for a decode past position 40).
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

F32, SEED, V = np.float32, 20261126, 256
MODELS = {  # SPEC.md §9
    "tiny-llama": dict(arch="llama", C=64, F=176, L=2, H=4, K=2, D=16, eps=1e-5, theta=10000.0),
    "tiny-gpt2": dict(arch="gpt2", C=64, F=256, L=2, H=4, K=4, D=16, eps=1e-5, npos=4096),
    "tiny-mamba": dict(arch="mamba", C=64, E=128, N=16, R=4, W=4, L=2, eps=1e-5),
}


def mix(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shapes(m: dict) -> list[tuple[str, tuple, float, float]]:
    """(name, shape, a, b) in SPEC.md §9's order; a matrix [in, out] gets a = gain * sqrt(3 / in)."""
    g = lambda gain, n_in: gain * math.sqrt(3.0 / n_in)  # noqa: E731
    C, L, norm = m["C"], m["L"], (0.1, 1.0)
    if m["arch"] == "gpt2":
        out = [("wte", (V, C), 1.0, 0.0), ("wpe", (m["npos"], C), 1.0, 0.0)]
        for i in range(L):
            out += [(f"{i}.ln_1_w", (C,), *norm), (f"{i}.ln_1_b", (C,), 0.1, 0.0)]
            out += [(f"{i}.attn_w", (C, 3 * C), g(1.5, C), 0.0), (f"{i}.attn_b", (3 * C,), 0.1, 0.0)]
            out += [(f"{i}.proj_w", (C, C), g(3.0, C), 0.0), (f"{i}.proj_b", (C,), 0.1, 0.0)]
            out += [(f"{i}.ln_2_w", (C,), *norm), (f"{i}.ln_2_b", (C,), 0.1, 0.0)]
            out += [(f"{i}.fc_w", (C, m["F"]), g(1.5, C), 0.0), (f"{i}.fc_b", (m["F"],), 0.1, 0.0)]
            out += [(f"{i}.mlp_w", (m["F"], C), g(3.0, m["F"]), 0.0), (f"{i}.mlp_b", (C,), 0.1, 0.0)]
        return out + [("ln_f_w", (C,), *norm), ("ln_f_b", (C,), 0.1, 0.0)]
    if m["arch"] == "llama":
        HD, KD, F = m["H"] * m["D"], m["K"] * m["D"], m["F"]
        out = [("embed", (V, C), 1.0, 0.0)]
        for i in range(L):
            out += [(f"{i}.in_norm", (C,), *norm), (f"{i}.q", (C, HD), g(1.5, C), 0.0)]
            out += [(f"{i}.k", (C, KD), g(1.5, C), 0.0), (f"{i}.v", (C, KD), g(1.5, C), 0.0)]
            out += [(f"{i}.o", (HD, C), g(1.5, HD), 0.0), (f"{i}.post_norm", (C,), *norm)]
            out += [(f"{i}.gate", (C, F), g(1.5, C), 0.0), (f"{i}.up", (C, F), g(1.5, C), 0.0)]
            out += [(f"{i}.down", (F, C), g(1.5, F), 0.0)]
        return out + [("norm", (C,), *norm), ("lm_head", (C, V), g(4.0, C), 0.0)]
    E, N, R, W = m["E"], m["N"], m["R"], m["W"]
    out = [("embed", (V, C), 1.0, 0.0)]
    for i in range(L):
        out += [(f"{i}.norm", (C,), *norm), (f"{i}.in_proj", (C, 2 * E), g(1.5, C), 0.0)]
        out += [(f"{i}.conv_w", (W, E), g(1.5, W), 0.0), (f"{i}.x_proj", (E, R + 2 * N), g(1.5, E), 0.0)]
        out += [(f"{i}.dt_proj", (R, E), g(1.5, R), 0.0), (f"{i}.dt_bias", (E,), 2.3, -4.6)]
        out += [(f"{i}.A_log", (E, N), 1.0, 0.5), (f"{i}.D", (E,), 0.0, 1.0), (f"{i}.out_proj", (E, C), g(1.5, E), 0.0)]
        out += [(f"{i}.conv_b", (E,), 0.1, 0.0)]
    return out + [("norm_f", (C,), *norm)]


def weights(m: dict) -> dict[str, np.ndarray]:
    key, offset, out = mix(np.array([SEED], np.uint64))[0], 0, {}
    with np.errstate(over="ignore"):
        for name, shape, a, b in shapes(m):
            n = int(np.prod(shape))
            bits = mix(key + np.uint64(offset) + np.arange(n, dtype=np.uint64)) >> np.uint64(40)
            u = (bits.astype(np.float64) * (2 / 2**24) - 1).astype(F32)
            out[name] = ((u * F32(a)).astype(F32) + F32(b)).reshape(shape)
            offset += n
    return out


def rms(x, w, eps):
    return x * (F32(1) / np.sqrt((x * x).mean(dtype=F32) + F32(eps))) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(dtype=F32)
    var = ((x - mu) * (x - mu)).mean(dtype=F32)
    return (x - mu) / np.sqrt(var + F32(eps)) * w + b


def silu(x):
    return x / (F32(1) + np.exp(-x))


def gelu(x):
    return F32(0.5) * x * (F32(1) + np.tanh(F32(math.sqrt(2 / math.pi)) * (x + F32(0.044715) * x**3)))


class Session:
    """One sequence: its position and, per layer, keys/values [K, capacity, D] (grown by doubling) or Mamba's conv
    window [E, W-1] (oldest first) and SSM state [E, N]."""

    def __init__(self, m: dict, src: Session | None = None):
        self.m = m
        if src is not None:
            self.pos, self.layers = src.pos, [[a.copy() for a in layer] for layer in src.layers]
        elif m["arch"] == "mamba":
            self.pos, self.layers = (
                0,
                [[np.zeros((m["E"], m["W"] - 1), F32), np.zeros((m["E"], m["N"]), F32)] for _ in range(m["L"])],
            )
        else:
            self.pos, self.layers = 0, [[np.zeros((m["K"], 16, m["D"]), F32) for _ in range(2)] for _ in range(m["L"])]

    def append(self, i: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys, vals = self.layers[i]
        if self.pos == keys.shape[1]:
            keys, vals = (np.concatenate([a, np.zeros_like(a)], axis=1) for a in (keys, vals))
            self.layers[i] = [keys, vals]
        keys[:, self.pos], vals[:, self.pos] = k, v
        return keys[:, : self.pos + 1], vals[:, : self.pos + 1]

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("conv_state", "recurrent_state") if self.m["arch"] == "mamba" else ("key", "value")
        out = {}
        for i, layer in enumerate(self.layers):
            for name, a in zip(names, layer):
                out[f"past_key_values.{i}.{name}"] = a[None] if self.m["arch"] == "mamba" else a[None, :, : self.pos]
        return out


def attend(q, keys, vals, H, K, D):
    """q [H, D] against keys/values [K, S, D]; query head h uses kv head h // (H / K)."""
    qg = q.reshape(K, H // K, D)
    scores = np.einsum("kgd,ksd->kgs", qg, keys) * F32(D**-0.5)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    return np.einsum("kgs,ksd->kgd", p / p.sum(-1, keepdims=True), vals).reshape(H * D)


def forward_one(W: dict, s: Session, token: int, pos: int) -> np.ndarray:
    """One token at ``pos`` through the network, appending to the session's state; the logits [V]."""
    m = s.m
    if m["arch"] == "gpt2":
        C, H, D = m["C"], m["H"], m["D"]
        x = W["wte"][token] + W["wpe"][pos]
        for i in range(m["L"]):
            qkv = layer_norm(x, W[f"{i}.ln_1_w"], W[f"{i}.ln_1_b"], m["eps"]) @ W[f"{i}.attn_w"] + W[f"{i}.attn_b"]
            keys, vals = s.append(i, qkv[C : 2 * C].reshape(H, D), qkv[2 * C :].reshape(H, D))
            x = x + attend(qkv[:C], keys, vals, H, H, D) @ W[f"{i}.proj_w"] + W[f"{i}.proj_b"]
            h = gelu(layer_norm(x, W[f"{i}.ln_2_w"], W[f"{i}.ln_2_b"], m["eps"]) @ W[f"{i}.fc_w"] + W[f"{i}.fc_b"])
            x = x + h @ W[f"{i}.mlp_w"] + W[f"{i}.mlp_b"]
        return layer_norm(x, W["ln_f_w"], W["ln_f_b"], m["eps"]) @ W["wte"].T
    if m["arch"] == "llama":
        H, K, D = m["H"], m["K"], m["D"]
        inv = F32(1) / (F32(m["theta"]) ** (np.arange(0, D, 2).astype(F32) / F32(D)))
        ang = np.concatenate([F32(pos) * inv] * 2)
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(t):  # t [n, D], rotate half: [-t2, t1]
            return t * cos + np.concatenate([-t[:, D // 2 :], t[:, : D // 2]], axis=1) * sin

        x = W["embed"][token]
        for i in range(m["L"]):
            a = rms(x, W[f"{i}.in_norm"], m["eps"])
            q, k = rope((a @ W[f"{i}.q"]).reshape(H, D)), rope((a @ W[f"{i}.k"]).reshape(K, D))
            keys, vals = s.append(i, k, (a @ W[f"{i}.v"]).reshape(K, D))
            x = x + attend(q.reshape(H * D), keys, vals, H, K, D) @ W[f"{i}.o"]
            h = rms(x, W[f"{i}.post_norm"], m["eps"])
            x = x + (silu(h @ W[f"{i}.gate"]) * (h @ W[f"{i}.up"])) @ W[f"{i}.down"]
        return rms(x, W["norm"], m["eps"]) @ W["lm_head"]
    E, N, R = m["E"], m["N"], m["R"]
    x = W["embed"][token]
    for i in range(m["L"]):
        conv, h = s.layers[i]
        uz = rms(x, W[f"{i}.norm"], m["eps"]) @ W[f"{i}.in_proj"]
        window = np.concatenate([conv, uz[:E, None]], axis=1)  # [E, W], oldest first
        u = silu((window * W[f"{i}.conv_w"].T).sum(axis=1, dtype=F32) + W[f"{i}.conv_b"])
        dbc = u @ W[f"{i}.x_proj"]
        dt = np.logaddexp(F32(0), dbc[:R] @ W[f"{i}.dt_proj"] + W[f"{i}.dt_bias"]).astype(F32)
        h = np.exp(-np.exp(W[f"{i}.A_log"]) * dt[:, None]) * h + (dt * u)[:, None] * dbc[None, R : R + N]
        s.layers[i] = [window[:, 1:], h]
        y = (h @ dbc[R + N :] + W[f"{i}.D"] * u) * silu(uz[E:])
        x = x + y @ W[f"{i}.out_proj"]
    return rms(x, W["norm_f"], m["eps"]) @ W["embed"].T


def enc(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, "<f4")
    return {"dtype": "f32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def f32(obj: dict) -> float:
    return struct.unpack("<f", struct.pack("<I", int(obj["f32"], 16)))[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bug", default="")
    ap.add_argument("--protocol", type=int, default=2)
    args = ap.parse_args()
    bug, sessions, counter = args.bug, {}, 0
    m = W = sampler = None
    for line in sys.stdin:
        req = json.loads(line)
        op, reply = req["op"], {"id": req.get("id"), "ok": True}
        if op == "hello":
            name = req.get("model", {}).get("name")
            print("external_impl: hello", name, file=sys.stderr, flush=True)
            if name not in MODELS:
                reply = {"id": req.get("id"), "ok": False, "error": f"only {', '.join(MODELS)}"}
            else:
                m, W, sampler = MODELS[name], weights(MODELS[name]), req.get("sampler")
                caps = ["fork", "state", "batch", "release"]
                reply |= {"vocab_size": V, "capabilities": caps, "name": f"external numpy {m['arch']}"}
                reply |= {"protocol": "lmstep-impl/2"} if args.protocol == 2 else {}
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
            sessions[counter] = Session(m, sessions[req["handle"]] if op == "fork" else None)
            reply["handle"] = counter
        elif op == "release":
            del sessions[req["handle"]]
        elif op in ("run", "run_batch"):
            handles = req["handles"] if op == "run_batch" else [req["handle"]]
            chunks = req["tokens"] if op == "run_batch" else [req["tokens"]]
            results = []
            for handle, chunk in zip(handles, chunks):
                s, rows = sessions[handle], []
                for t in chunk:
                    rows.append(forward_one(W, s, t, s.pos))
                    s.pos += 1
                logits = np.stack(rows)
                results.append({"handle": handle, "logits": enc(logits[:, :-1] if bug == "wrong-shape" else logits)})
            reply |= {"results": results} if op == "run_batch" else results[0]
        elif op == "decode":
            if bug == "raise" and sessions[req["handle"]].pos >= 40:
                reply = {"id": req.get("id"), "ok": False, "error": "out of cache blocks (simulated)"}
            else:
                s = sessions[req["handle"]]
                z = forward_one(W, s, req["token"], s.pos + (1 if bug == "position" else 0))
                z = z + F32(1e-3) if bug == "noise" else z
                s.pos += 1
                settings = req.get("sampler") or sampler
                t, k, p = f32(settings["temperature"]), settings["top_k"], f32(settings["top_p"])
                k = k + 1 if bug == "top-k" and k else k
                token = reference_sample(z, f32(req["rand"]), t, k, p)
                reply |= {"handle": req["handle"], "logits": enc(z), "token": int(token)}
        elif op == "state":
            reply["arrays"] = {k: enc(a) for k, a in sessions[req["handle"]].arrays().items()}
        else:
            reply = {"id": req.get("id"), "ok": False, "error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
