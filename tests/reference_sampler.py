"""A second implementation of the sampler, written from SPEC.md's text with scalar loops (no ops vocabulary, no
vectorised selection), so that agreement with ``lmstep.spec.sampler.sample`` is evidence about the written
spec, not a copy of the code. (The negative controls mutate spec/sampler.py itself: lmstep/mutants.py.)"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def reference_sample(logits, u, temperature, top_k, top_p) -> int:
    with np.errstate(over="ignore", invalid="ignore"):  # z / T may overflow; step 0 handles it
        return _sample(logits, u, temperature, top_k, top_p)


def _sample(logits, u, temperature, top_k, top_p) -> int:
    z = [F32(v) for v in np.asarray(logits, np.float32)]
    V = len(z)
    t, p, u = F32(temperature), F32(top_p), F32(u)
    y_max = max(np.float32(v / t) for v in z) if t != 0 else None
    if t == 0 or np.isinf(y_max):  # greedy, also when the largest z / T overflows (SPEC.md §3 step 1)
        best = 0
        for i in range(1, V):
            if z[i] > z[best]:
                best = i
        return best
    y = np.asarray(z, np.float32) / t  # step 1, elementwise float32
    order = sorted(range(V), key=lambda i: (-float(y[i]), i))  # step 2: descending, ties by lower index
    k = V if top_k == 0 else min(top_k, V)
    s = np.array([y[i] for i in order], np.float32)
    e_all = np.exp(s - s[0])  # step 3 (the exp primitive itself, elementwise)
    e = [F32(e_all[r]) if r < k else F32(0) for r in range(V)]
    c, acc = [], F32(0)
    for r in range(V):  # step 4: sequential float32 sum
        acc = F32(acc + e[r])
        c.append(acc)
    total = c[-1]
    m = 0
    for r in range(k):  # step 5
        prev = c[r - 1] if r > 0 else F32(0)
        threshold = F32(total * p)
        if p < 1 and not prev < threshold:
            break
        m = r + 1
    target = F32(u * c[m - 1])  # step 6
    for r in range(m):
        if c[r] > target:
            return order[r]
    last = max(r for r in range(m) if e[r] > 0)  # step 7
    return order[last]
