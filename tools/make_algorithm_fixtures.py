"""Record what transformers computes on the compiled algorithms, in tests/fixtures/algorithms/<name>/.

    pip install -e '.[hf]'                   # torch==2.13.0, transformers, safetensors
    python tools/make_algorithm_fixtures.py  # rewrites tests/fixtures/algorithms/

For each algorithm, the folder ``lmstep compile NAME`` writes (defaults: 4 symbols, max_len 8) is loaded with
``AutoModelForCausalLM.from_pretrained`` as it is (float32, transformers' default attention), and:
- every prompt within the bound runs teacher-forced (``BOS x SEP y``), one batched forward per length:
  transformers' greedy decisions are compared with the algorithm's answer, and its smallest top-2 margin kept;
- for the SAMPLES prompts, transformers' logits over ``BOS x SEP y`` go to expected.safetensors
  (``logits.{i}`` [2n+2, V]) and ``generate(do_sample=False)``'s continuation to expected.json.
The tests (tests/test_algorithms_hf.py) compare the spec with these without torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

from lmstep.proofs.exhaustive import prompts_of_length, teacher_forced
from lmstep.runtime.algorithms import ALGORITHMS, compile_algorithm
from lmstep.runtime.algorithms.folder import write_folder

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "algorithms")
BATCH = 2048


def samples(k: int, max_len: int) -> list[list[int]]:
    """Two random prompts per length, plus the empty one, a constant one and a sorted one at the bound."""
    rng = np.random.default_rng(2026)
    out = [[], [k - 1] * max_len, list(range(k)) * (max_len // k) + list(range(max_len % k))]
    out += [rng.integers(0, k, n).tolist() for n in range(1, max_len + 1) for _ in range(2)]
    return out


def every_prompt(ref, algo) -> dict:
    prompts = decisions = agree = 0
    margin = float("inf")
    with torch.no_grad():
        for n in range(algo.max_len + 1):
            xs = prompts_of_length(algo.symbols, n)
            for lo in range(0, len(xs), BATCH):
                tokens, want = teacher_forced(algo, xs[lo : lo + BATCH])
                z = ref(torch.tensor(tokens)).logits[:, n + 1 :, :].float().numpy()
                top2 = np.sort(z, axis=-1)[..., -2:]
                margin = min(margin, float((top2[..., 1] - top2[..., 0]).min()))
                agree += int((z.argmax(-1) == want).all(axis=-1).sum())
                prompts += len(tokens)
                decisions += want.size
    return {"prompts": prompts, "decisions": decisions, "agree": agree, "min_top2_margin": margin}


def main() -> None:
    torch.set_num_threads(1)
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for name in ALGORITHMS:
        algo = compile_algorithm(name)
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_folder(algo, os.path.join(tmp, name))
            ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        arrays, records = {}, []
        with torch.no_grad():
            for i, xs in enumerate(samples(algo.symbols, algo.max_len)):
                tokens, _ = teacher_forced(algo, np.array([xs], np.int64).reshape(1, len(xs)))
                arrays[f"logits.{i}"] = ref(torch.tensor(tokens)).logits[0].float().numpy()
                prompt = algo.prompt(xs)
                out = ref.generate(
                    torch.tensor([prompt]),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                    max_new_tokens=len(algo.answer(xs)) + 1,  # one more than needed: it must stop at EOS itself
                    do_sample=False,
                    pad_token_id=algo.eos,
                )
                records.append({"prompt": xs, "tokens": tokens[0].tolist(), "generate": out[0, len(prompt) :].tolist()})
        expected = {
            "about": "transformers' outputs for the folder `lmstep compile "
            f"{name}` writes; by tools/make_algorithm_fixtures.py, read by tests/test_algorithms_hf.py",
            "algorithm": name,
            "symbols": algo.symbols,
            "max_len": algo.max_len,
            "weights_sha256": algo.model.weights_digest(),
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "attn_implementation": getattr(ref.config, "_attn_implementation", None),
            "every_prompt": every_prompt(ref, algo),
            "samples": records,
        }
        os.makedirs(os.path.join(ROOT, name))
        with open(os.path.join(ROOT, name, "expected.json"), "w") as fh:
            json.dump(expected, fh, indent=1)
            fh.write("\n")
        save_file(arrays, os.path.join(ROOT, name, "expected.safetensors"))
        print(f"{name}: {json.dumps(expected['every_prompt'])}, {len(records)} samples")


if __name__ == "__main__":
    main()
