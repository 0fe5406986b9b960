"""The mutant catalogue: every deliberately broken variant of the spec, declared once.

Each entry names the laws (lmstep.spec.laws) the bug must break, its bug class and how it is built
(lmstep/mutation.py: source edits of the spec's functions in a private copy, and/or the checker engine around
it). The same entry is a negative control in the tests (tests/test_spec_mutants.py, tests/test_spec_sampler.py
run every observable mutant through the spec-level check of each law it breaks), a ``~`` obligation in the
proofs (``Obligation.mutant``) and an implementation for the checker (``lmstep check --impl mutant:NAME``,
benchmarks/mutant_catalogue.py). Adding a mutant is one entry here; the tests pick it up.

The bugs are the kinds seen in real engines' issue trackers (docs/design.md §6): prefill and decode taking
different paths, caches ignored or not appended, chunks padded into the state, wrong head maps and positions,
samplers that read the spec's comparisons differently, and rand streams that shift.
"""

from __future__ import annotations

from .mutation import Edit, Mutant

HOT = {"temperature": 0.9, "top_k": 40, "top_p": 0.8}  # sampler settings under which sampling bugs show
SAMPLE = "sampler.sample"
SCHEDULE = "lmstep.runtime.mamba_scan"
WHOLE = ("tiny-llama", "tiny-gpt2", "tiny-mamba")
PLAIN_ROPE = (
    'rope_type="default", factor=None, low_freq_factor=None, high_freq_factor=None, '
    "original_max_position_embeddings=None"
)


def _layers(changes: str) -> str:
    """Source of ``w`` with every layer's fields changed: weights a decode path would not read."""
    return f"attrs.evolve(w, layers=tuple(attrs.evolve(layer, {changes}) for layer in w.layers))"


_CATALOGUE = [
    # -- model code: one equation of a layer is wrong ---------------------------------------------------------
    Mutant(
        "causal-mask-off-by-one",
        ["causality", "unrolled-eq-recurrent"],
        "model code",
        "the causal mask lets each query see one future key",
        [Edit("layers.causal_mask", "o.unsqueeze(query_slot, -1)", "o.unsqueeze(o.add(query_slot, 1), -1)")],
        models=["tiny-gpt2", "tiny-llama"],
    ),
    Mutant(
        "additive-mask",
        ["unrolled-eq-recurrent"],
        "model code",
        "a finite additive mask (-1e4) instead of replacing hidden scores: in float32 exp(-1e4) is 0, over the "
        "reals the future leaks",
        [
            Edit(
                "layers.attention_unrolled",
                "o.where(visible, scores, o.const(MASKED, np.float32))",
                "o.add(scores, o.where(visible, o.const(0.0, np.float32), o.const(-10000.0, np.float32)))",
            )
        ],
        checked=False,
        observable=False,
    ),
    Mutant(
        "gqa-wrong-mapping",
        ["unrolled-eq-recurrent"],
        "model code",
        "decode maps query head h to kv head h % K instead of h // G",
        [
            Edit(
                "layers.attention_decode",
                "qg = o.reshape(q, (0, n_kv, group, d))",
                "qg = o.transpose(o.reshape(q, (0, group, n_kv, d)), (0, 2, 1, 3))",
            )
        ],
    ),
    Mutant(
        "attention-decode-scale",
        ["unrolled-eq-recurrent"],
        "model code",
        "decode scales attention scores by 1/D instead of 1/sqrt(D)",
        [Edit("layers.attention_decode", "d**-0.5", "d**-1.0")],
    ),
    Mutant(
        "rope-decode-off-by-one",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode rotates queries and keys for the position after its own",
        [Edit("llama.decode", "o.unsqueeze(position, 1)", "o.unsqueeze(o.add(position, 1), 1)")],
    ),
    Mutant(
        "decode-position-off-by-one",
        ["unrolled-eq-recurrent"],
        "model code",
        "decode looks up the learned position after its own",
        [Edit("gpt2.decode", "o.unsqueeze(position, 1)", "o.unsqueeze(o.add(position, 1), 1)")],
        models=["tiny-gpt2"],
    ),
    Mutant(
        "conv-not-shifted",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode keeps the old conv window instead of shifting the new input in",
        [Edit("layers.causal_conv_step", "o.slice(window, 2, 1, None)", "o.slice(window, 2, 0, -1)")],
        models=["tiny-mamba", "tiny-mamba2"],
    ),
    Mutant(
        "scan-swapped",
        ["unrolled-eq-recurrent", "split-invariance"],
        "model code",
        "the scan combines (a1, b1).(a2, b2) as (a2 a1, a2 b2 + b1): operands swapped",
        [Edit("mamba._scan", "o.add(o.mul(a, b_prev), b)", "o.add(o.mul(a, b), b_prev)")],
        models=["tiny-mamba"],
    ),
    Mutant(
        "scan-h0-undecayed",
        ["split-invariance"],
        "model code",
        "a carried SSM state enters the scan without its decay",
        [Edit("mamba._scan", "o.mul(o.slice(a, 1, 0, 1), o.unsqueeze(h0, 1))", "o.unsqueeze(h0, 1)")],
        models=["tiny-mamba"],
    ),
    Mutant(
        "scan-rounds-capped",
        ["unrolled-eq-recurrent"],
        "model code",
        "the scan written for 32 tokens: its rounds stop at distance 16 whatever the length",
        [
            Edit(
                "mamba._scan",
                "while d < o.static_len(a, 1, SCAN_BOUND):",
                "while d < min(o.static_len(a, 1, SCAN_BOUND), 32):",
            )
        ],
        models=["tiny-mamba"],
    ),
    # The Llama-style families (SPEC.md §5): an engine whose decode path was written for plain Llama, so it skips
    # the family's feature there while its prefill keeps it (prefill and decode taking different paths, §6 of
    # docs/design.md); and Gemma's embedding scale in bfloat16, the model dtype's rounding transformers once had.
    Mutant(
        "llama3-rope-unscaled-in-decode",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode rotates with plain RoPE frequencies, ignoring the llama3 scaling that prefill applies",
        [Edit("llama.decode", "_decoder(o, cfg, w,", f"_decoder(o, attrs.evolve(cfg, {PLAIN_ROPE}), w,")],
        models=["tiny-llama3"],
    ),
    Mutant(
        "qkv-bias-dropped-in-decode",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode projects q, k and v without Qwen2's biases",
        [
            Edit(
                "llama.decode",
                "_decoder(o, cfg, w,",
                f"_decoder(o, cfg, {_layers('q_bias=None, k_bias=None, v_bias=None')},",
            )
        ],
        models=["tiny-qwen2"],
    ),
    Mutant(
        "qk-norm-skipped-in-decode",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode skips Qwen3's RMSNorm of each head's q and k",
        [Edit("llama.decode", "_decoder(o, cfg, w,", f"_decoder(o, cfg, {_layers('q_norm=None, k_norm=None')},")],
        models=["tiny-qwen3"],
    ),
    Mutant(
        "norm-offset-dropped-in-decode",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode's RMSNorms scale by w instead of Gemma's (1 + w)",
        [Edit("llama.decode", "_decoder(o, cfg, w,", "_decoder(o, attrs.evolve(cfg, norm_unit_offset=False), w,")],
        models=["tiny-gemma"],
    ),
    Mutant(
        "embedding-scale-bfloat16",
        ["numeric-tolerance"],
        "numerics",
        "Gemma's sqrt(hidden_size) rounded to bfloat16 (6.9375 for 48) instead of float32, in both forms",
        [
            Edit(
                "llama._decoder",
                "x = o.mul(x, cfg.embedding_scale)",
                "x = o.mul(x, float((np.float32(cfg.embedding_scale).view(np.uint32) + np.uint32(0x8000) "
                "& np.uint32(0xFFFF0000)).view(np.float32)))",
            )
        ],
        models=["tiny-gemma"],
    ),
    Mutant(
        "partial-rotary-ignored-in-decode",
        ["unrolled-eq-recurrent", "state-contract"],
        "model code",
        "decode rotates the whole head instead of Phi-3's first partial_rotary_factor of it",
        [Edit("llama.decode", "_decoder(o, cfg, w,", "_decoder(o, attrs.evolve(cfg, partial_rotary_factor=1.0), w,")],
        models=["tiny-phi3"],
    ),
    # Mamba-2's chunked SSD (mamba2.ssd, the unrolled form) and its mixer.
    Mutant(
        "ssd-state-not-carried",
        ["unrolled-eq-recurrent", "split-invariance", "state-contract"],
        "state handling",
        "the chunked SSD drops every chunk's end state: each chunk starts from the carried state alone",
        [
            Edit(
                "mamba2.ssd",
                "o.concat([o.unsqueeze(h0, 1), states], axis=1)",
                "o.concat([o.unsqueeze(h0, 1), o.mul(states, 0.0)], axis=1)",
            )
        ],
        models=["tiny-mamba2"],
    ),
    Mutant(
        "ssd-chunk-decay-off-by-one",
        ["unrolled-eq-recurrent", "split-invariance", "state-contract"],
        "model code",
        "the decay between chunks is shifted by one chunk: a state is decayed through the chunks after the one it "
        "enters instead of those before (the chunk totals padded at the end, not the front)",
        [
            Edit(
                "mamba2.ssd",
                "o.pad_front(totals, -1, 1, 0.0)",
                "o.concat([totals, o.mul(o.slice(totals, -1, 0, 1), 0.0)], axis=-1)",
            )
        ],
        models=["tiny-mamba2"],
    ),
    Mutant(
        "ssd-h0-undecayed",
        ["unrolled-eq-recurrent", "split-invariance", "state-contract"],
        "model code",
        "the state entering a chunk reaches its outputs without the decay from the chunk's start",
        [
            Edit(
                "mamba2.ssd",
                "o.mul(o.matmul(c, start), o.unsqueeze(o.exp(cumulative), -1))",
                "o.matmul(c, start)",
            )
        ],
        models=["tiny-mamba2"],
    ),
    Mutant(
        "ssd-decay-per-group",
        ["unrolled-eq-recurrent", "split-invariance", "state-contract"],
        "model code",
        "the unrolled form decays every head of a group with the A of the group's first head (A indexed per group)",
        [
            Edit(
                "mamba2._mixer_unrolled",
                "o.neg(o.exp(layer.A_log))",
                "o.neg(o.exp(o.gather(layer.A_log, o.mul(o.int_div(o.arange(0, cfg.num_heads), "
                "cfg.num_heads // cfg.n_groups), cfg.num_heads // cfg.n_groups))))",
            )
        ],
        models=["tiny-mamba2"],
    ),
    Mutant(
        "gated-norm-before-gate",
        ["numeric-tolerance"],
        "model code",
        "the grouped RMSNorm applied before the gate, norm(y) * silu(z) (mamba_ssm's RMSNormGated default; "
        "Mamba-2 gates first), in both forms alike: only a comparison with the spec shows it",
        [
            Edit(
                "mamba2._output",
                "gated = o.reshape(o.mul(y, silu(o, z)), (*lead, cfg.n_groups, -1))",
                "gated = o.reshape(y, (*lead, cfg.n_groups, -1))",
            ),
            Edit(
                "mamba2._output",
                "normed = o.reshape(rms_norm(o, gated, weight, cfg.layer_norm_epsilon), (*lead, -1))",
                "normed = o.mul(o.reshape(rms_norm(o, gated, weight, cfg.layer_norm_epsilon), (*lead, -1)), "
                "silu(o, z))",
            ),
        ],
        models=["tiny-mamba2"],
    ),
    # The runtime's scan schedule (runtime/mamba_scan.py, what the export builds): its mutants are copies of that
    # module, run by the proofs and the schedule's tests; the spec and the checker's spec engines do not use it.
    Mutant(
        "pairing-swapped",
        ["unrolled-eq-recurrent"],
        "model code",
        "the runtime's pairing scan with its combine's operands swapped",
        [Edit(f"{SCHEDULE}.scan", "o.add(o.mul(a, b_prev), b)", "o.add(o.mul(a, b), b_prev)")],
        models=["tiny-mamba"],
        checked=False,
    ),
    Mutant(
        "pairing-h0-undecayed",
        ["split-invariance"],
        "model code",
        "the runtime's pairing scan adds a carried state to every top prefix without its decay",
        [Edit(f"{SCHEDULE}.scan", "o.add(o.mul(x[0], o.unsqueeze(h0, 1)), x[1])", "o.add(o.unsqueeze(h0, 1), x[1])")],
        models=["tiny-mamba"],
        checked=False,
    ),
    Mutant(
        "pairing-last-pair-padded",
        ["unrolled-eq-recurrent"],
        "model code",
        "the runtime's scan plan pads the last pair of an even length with the identity, dropping the last element",
        [Edit(f"{SCHEDULE}.scan_plan", "o.less_equal(twice, n)", "o.less(twice, n)")],
        models=["tiny-mamba"],
        checked=False,
    ),
    Mutant(
        "pairing-down-sweep-early",
        ["unrolled-eq-recurrent", "split-invariance"],
        "model code",
        "the runtime's down-sweep merges each odd row one even element early",
        [Edit(f"{SCHEDULE}.scan_plan", "o.add(half, 2)", "o.add(half, 1)")],
        models=["tiny-mamba"],
        checked=False,
    ),
    Mutant(
        "pairing-top-round-off-by-one",
        ["unrolled-eq-recurrent"],
        "model code",
        "a top Hillis-Steele round of the runtime's schedule reads one row too far back (only past 32 tokens)",
        [
            Edit(
                f"{SCHEDULE}.scan_plan",
                "rounds.append(o.max(o.sub(rows, e), 0))",
                "rounds.append(o.max(o.sub(rows, o.add(e, 1)), 0))",
            )
        ],
        models=["tiny-mamba"],
        checked=False,
    ),
    # -- sliding window (Mistral): the band and the bounded state ---------------------------------------------
    Mutant(
        "window-band-off-by-one",
        ["sliding-window", "unrolled-eq-recurrent", "split-invariance"],
        "model code",
        "the unrolled form's band lets each query see W + 1 keys (rank > query - W - 1), decode sees W",
        [
            Edit(
                "layers.window_mask",
                "o.sub(o.unsqueeze(query_rank, -1), window)",
                "o.sub(o.unsqueeze(query_rank, -1), window + 1)",
            )
        ],
        models=["tiny-mistral"],
    ),
    Mutant(
        "window-only-in-decode",
        ["sliding-window", "unrolled-eq-recurrent", "split-invariance"],
        "model code",
        "the window is applied in decode (the bounded cache) but not in prefill: a chunk attends to all of "
        "[cache; chunk] under the plain causal mask",
        [
            Edit(
                "llama.forward",
                "visible = window_mask(o, n_new, n_all, cfg.sliding_window, mask)",
                "visible = causal_mask(o, n_new, n_all, mask)",
            )
        ],
        models=["tiny-mistral"],
    ),
    Mutant(
        "window-state-keeps-w",
        ["sliding-window", "unrolled-eq-recurrent", "state-contract"],
        "state handling",
        "the state keeps the last W keys instead of W - 1, so decode attends to W + 1 keys",
        [Edit("llama.empty_cache", "cfg.kept_keys", "cfg.sliding_window")],
        models=["tiny-mistral"],
    ),
    Mutant(
        "window-wrap-off-by-one",
        ["unrolled-eq-recurrent", "state-contract"],
        "state handling",
        "when the window's buffer wraps (its kept rows move to the front of a new store), the rows are read one "
        "slot behind: the newest key is lost and an evicted one comes back",
        [
            Edit(
                "arrays.SeqBuffer._append_and_wrap",
                "_rows(seen, self.axis, total - kept, total)",
                "_rows(seen, self.axis, total - kept - (total > kept), total - (total > kept))",
            )
        ],
        models=["tiny-mistral"],
    ),
    # -- state handling: what is carried between calls -----------------------------------------------------
    Mutant(
        "prefill-ignores-cache",
        ["split-invariance", "state-contract"],
        "state handling",
        "a multi-token forward with a cache attends to the new tokens only",
        [
            Edit(
                "llama.forward",
                "return _decoder(o, cfg, w, tokens, positions, cache, attend)",
                "return _decoder(o, cfg, w, tokens, positions, empty_cache(cfg, 1), attend)",
            )
        ],
    ),
    Mutant(
        "h0-ignored",
        ["split-invariance"],
        "state handling",
        "a multi-token forward with a cache restarts the SSM state from 0",
        [Edit("mamba._mixer_unrolled", "b, c, h0)", "b, c, o.mul(h0, 0.0))")],
        models=["tiny-mamba"],
    ),
    Mutant(
        "rope-restart",
        ["split-invariance", "state-contract"],
        "state handling",
        "prefill numbers the positions of every chunk from 0",
        [
            Edit(
                "model.Model.prefill",
                "np.arange(state.pos, state.pos + toks.shape[1], dtype=np.int64)",
                "np.arange(0, toks.shape[1], dtype=np.int64)",
            )
        ],
    ),
    Mutant(
        "kv-not-appended",
        ["split-invariance", "state-contract"],
        "state handling",
        "a multi-token step with a cache does not append its keys and values",
        [Edit("model.Model.prefill", "freeze_cache(cache)", "freeze_cache(cache if state.pos == 0 else state.cache)")],
    ),
    Mutant(
        "zero-padded-chunk",
        ["split-invariance", "state-contract"],
        "state handling",
        "prefill zero-pads the chunk to a multiple of 4 and keeps the state after the padding",
        [
            Edit(
                "model.Model.prefill",
                "toks = np.array(self._check_tokens(tokens, state.pos), np.int64)[None, :]",
                "n = len(tokens)\n"
                "toks = np.array(self._check_tokens(list(tokens) + [0] * (-n % 4), state.pos), np.int64)[None, :]",
            ),
            Edit(
                "model.Model.prefill",
                "state.pos + toks.shape[1], freeze_cache(cache)), frozen_array(logits[0], np.float32)",
                "state.pos + n, freeze_cache(cache)), frozen_array(logits[0, :n], np.float32)",
            ),
        ],
        models=["tiny-mamba", "tiny-mamba2"],
    ),
    Mutant(
        "forks-share-buffer",
        ["states-are-values", "split-invariance"],
        "state handling",
        "the KV cache always appends in place, so two continuations of one state overwrite each other",
        [
            Edit(
                "arrays.SeqBuffer.append",
                "in_place = store.filled == self.length and end <= store.data.shape[self.axis]",
                "in_place = end <= store.data.shape[self.axis]",
            )
        ],
        only_checker=["split-invariance"],  # a later chunk of the overwritten branch; the split check never forks
    ),
    Mutant(
        "batch-padding-leak",
        ["batch-invariance"],
        "state handling",
        "attention ignores the key mask, so batched sequences attend to their left padding",
        [
            Edit(
                "layers.causal_mask",
                "visible = o.logical_and(visible, o.unsqueeze(o.unsqueeze(key_mask, 1), 1))",
                "pass",
            )
        ],
        engine="batched",
        models=["tiny-gpt2", "tiny-llama"],
    ),
    Mutant(
        "batch-shares-first-state",
        ["batch-invariance"],
        "state handling",
        "a batched Mamba prefill continues every sequence from the first row's carried state",
        [Edit("mamba._mixer_unrolled", "b, c, h0)", "b, c, o.add(o.mul(h0, 0.0), o.slice(h0, 0, 0, 1)))")],
        models=["tiny-mamba"],
        checked=False,  # the checker's batch engine batches transformers (a key mask over padding)
    ),
    # -- numerics ---------------------------------------------------------------------------------------------
    Mutant(
        "float16-accumulation",
        ["numeric-tolerance"],
        "numerics",
        "matmuls in float16 with float16 accumulation",
        [
            Edit(
                "ops.NumpyOps.matmul",
                "return np.matmul(a, b)",
                "return np.matmul(np.asarray(a, np.float16), np.asarray(b, np.float16)).astype(np.float32)",
            )
        ],
    ),
    Mutant(
        "rms-eps-outside-sqrt",
        ["numeric-tolerance"],
        "numerics",
        "RMSNorm adds eps outside the square root: 1 / (sqrt(mean(x^2)) + eps)",
        [Edit("layers.rms_norm", "o.reciprocal(o.sqrt(o.add(var, eps)))", "o.reciprocal(o.add(o.sqrt(var), eps))")],
    ),
    Mutant(
        "rms-eps-outside-sqrt-mamba",
        ["numeric-tolerance"],
        "numerics",
        "the same RMSNorm eps placement on Mamba (its block norms and the final norm)",
        [Edit("layers.rms_norm", "o.reciprocal(o.sqrt(o.add(var, eps)))", "o.reciprocal(o.add(o.sqrt(var), eps))")],
        models=["tiny-mamba"],
    ),
    Mutant(
        "layernorm-eps-outside-sqrt",
        ["numeric-tolerance"],
        "numerics",
        "LayerNorm adds eps outside the square root: (x - mean) / (sqrt(var) + eps)",
        [Edit("layers.layer_norm", "o.sqrt(o.add(var, eps))", "o.add(o.sqrt(var), eps)")],
        models=["tiny-gpt2"],
    ),
    Mutant(
        "gelu-constant-typo",
        ["numeric-tolerance"],
        "numerics",
        "GELU's cubic coefficient typed 0.0447 instead of 0.044715",
        [Edit("layers.gelu_tanh", "x), 0.044715)", "x), 0.0447)")],
        models=["tiny-gpt2"],
    ),
    Mutant(
        "gelu-sqrt-2-over-pi-typo",
        ["numeric-tolerance"],
        "numerics",
        "GELU's sqrt(2/pi) written 0.797 instead of 0.79788 (wrong in its third significant digit)",
        [Edit("layers.gelu_tanh", "_GELU_C)", "0.797)")],
        models=["tiny-gpt2"],
    ),
    Mutant(
        "rope-theta-typo",
        ["numeric-tolerance"],
        "numerics",
        "RoPE base 10100 instead of the config's 10000 (wrong in its third significant digit)",
        # rope.inv_freq: every Llama-style family's frequencies start from theta there (SPEC.md §4)
        [Edit("rope.inv_freq", "cfg.rope_theta)", "cfg.rope_theta * 1.01)")],
    ),
    Mutant(
        "norm-eps-hardcoded",
        ["numeric-tolerance"],
        "numerics",
        "Mamba's block RMSNorms use a hard-coded eps 1e-6 instead of the config's 1e-5",
        # mamba.blocks: the residual stack both forms (and Mamba-2) share, so both forms are wrong alike
        [
            Edit(
                "mamba.blocks", "rms_norm(o, x, layer.norm, cfg.layer_norm_epsilon)", "rms_norm(o, x, layer.norm, 1e-6)"
            )
        ],
        models=["tiny-mamba"],
    ),
    Mutant(
        "fp16-kv-cache",
        ["numeric-tolerance", "state-contract"],
        "numerics",
        "keys and values stored in float16 (a positive control: conforms at L2, not at L1)",
        [
            Edit("llama._decoder", "k_cache.append(k)", 'k_cache.append(o.cast(o.cast(k, "float16"), "float32"))'),
            Edit("llama._decoder", "v_cache.append(v)", 'v_cache.append(o.cast(o.cast(v, "float16"), "float32"))'),
        ],
        conforms_at="L2",
    ),
    # -- caches: an engine stores its KV cache differently from the spec (runtime/check/engines.py) -------------
    Mutant(
        "kv-window-16",
        ["split-invariance", "unrolled-eq-recurrent", "state-contract"],
        "caches",
        "a KV cache of 16 slots (a sliding window): past 16 tokens the oldest keys are dropped silently",
        engine="kv-window-16",
    ),
    Mutant(
        "kv-capacity-32",
        ["split-invariance", "unrolled-eq-recurrent", "state-contract"],
        "caches",
        "a fixed KV buffer of 32 slots that silently drops the oldest keys when full",
        engine="kv-capacity-32",
        models=["tiny-gpt2"],
    ),
    Mutant(
        "kv-ring-256",
        ["split-invariance", "unrolled-eq-recurrent", "state-contract"],
        "caches",
        "a ring buffer of 256 slots: past 256 tokens the oldest keys are overwritten",
        engine="kv-ring-256",
    ),
    Mutant(
        "kv-page-boundary",
        ["split-invariance", "unrolled-eq-recurrent", "state-contract"],
        "caches",
        "a paged KV cache (pages of 16) whose chunk write puts the first key of a new page into the previous "
        "page's last slot",
        engine="kv-page-boundary",
    ),
    Mutant(
        "fork-drops-last",
        ["states-are-values"],
        "sessions",
        "fork copies the cache one row short: the forked session loses the last token's keys and values",
        engine="fork-drops-last",
    ),
    Mutant(
        "batch-positions",
        ["batch-invariance"],
        "state handling",
        "a batched call numbers every row's new tokens from the padded cache length instead of its own position",
        engine="batch-positions",
    ),
    # -- sampling: the sampler reads SPEC.md §3 differently ------------------------------------------------------
    Mutant(
        "greedy-last-index",
        ["sampler-greedy", "sampler"],
        "sampling",
        "greedy breaks ties towards the highest index (ArgMax select_last_index=1)",
        [
            Edit(
                SAMPLE,
                "greedy = o.argmax(logits, axis=-1)",
                "last = o.sub(o.shape(logits, -1), 1)\n"
                "flipped = o.gather_last(logits, o.sub(last, o.unsqueeze(o.arange(0, o.shape(logits, -1)), 0)))\n"
                "greedy = o.sub(last, o.argmax(flipped, axis=-1))",
            )
        ],
        checked=False,  # exact ties of the largest logit do not occur with the built-in weights
    ),
    Mutant(
        "no-overflow-rule",
        ["sampler-greedy", "sampler"],
        "sampling",
        "no greedy fallback when z / T overflows: a tiny temperature returns the least likely token",
        [Edit(SAMPLE, "token = o.where(o.squeeze(o.equal(o.sub(top, top), 0.0), -1), token, greedy)", "pass")],
    ),
    Mutant(
        "bracket-inclusive",
        ["sampler-bracket", "sampler"],
        "sampling",
        "the draw takes the first rank with c_r >= target instead of c_r > target",
        [Edit(SAMPLE, "o.less_equal(c, target)", "o.less(c, target)")],
        level="L0",  # the checker aims a rand exactly at a boundary; a rounding difference looks the same at L1
    ),
    Mutant(
        "top-p-inclusive",
        ["sampler-keep-set", "sampler"],
        "sampling",
        "top-p keeps rank r while c_{r-1} <= top_p * total instead of <",
        [Edit(SAMPLE, "o.less(c_prev, p_threshold)", "o.less_equal(c_prev, p_threshold)")],
        level="L0",  # the checker aims top_p at an exact c_{r-1}; a rounding difference looks the same at L1
    ),
    Mutant(
        "top-k-off-by-one",
        ["sampler-keep-set", "sampler"],
        "sampling",
        "top-k keeps rank k too (rank <= k)",
        [Edit(SAMPLE, "in_top_k = o.less(rank, k)", "in_top_k = o.less_equal(rank, k)")],
        sampler={"temperature": 1.0, "top_k": 2},
    ),
    Mutant(
        "top-k-drops-kth",
        ["sampler"],
        "sampling",
        "top-k keeps k - 1 tokens (rank < k - 1)",
        [Edit(SAMPLE, "in_top_k = o.less(rank, k)", "in_top_k = o.less(rank, o.sub(k, 1))")],
        sampler={"temperature": 1.0, "top_k": 2},
    ),
    Mutant(
        "top-p-before-top-k",
        ["sampler"],
        "sampling",
        "the top-p set is chosen on the whole distribution before top-k cuts it (top-p applied first)",
        [
            Edit(
                SAMPLE,
                "keep = o.logical_and(in_top_k, o.less(c_prev, p_threshold))",
                "all_c = o.cumsum(o.exp(o.sub(s, top)), axis=-1)\n"
                "all_threshold = o.where(o.less(o.const(top_p, np.float32), 1.0), "
                "o.mul(o.slice(all_c, -1, -1, None), o.const(top_p, np.float32)), "
                "o.mul(o.slice(all_c, -1, -1, None), 2.0))\n"
                "all_prev = o.slice(o.pad_front(all_c, -1, 1, 0.0), -1, 0, -1)\n"
                "keep = o.logical_and(in_top_k, o.less(all_prev, all_threshold))",
            )
        ],
        sampler={"temperature": 1.0, "top_k": 3, "top_p": 0.6},
    ),
    Mutant(
        "normalise-first",
        ["sampler-no-zero-prob", "sampler"],
        "sampling",
        "probabilities normalised to sum 1 before the CDF (SPEC.md §3 note); a draw past the rounded end of that CDF "
        "takes the last token of the sorted vocabulary, outside any top-k or top-p cut",
        [
            Edit(
                SAMPLE,
                "o.less_equal(c, target)",
                "o.less_equal(o.cumsum(o.where(keep, o.div(e, kept_total), o.const(0.0, np.float32)), axis=-1), "
                "o.unsqueeze(o.const(u, np.float32), -1))",
            ),
            Edit(SAMPLE, "first_above, last_positive)", "first_above, o.sub(vocab, 1))"),
        ],
        sampler=HOT,
    ),
    Mutant(
        "top-p-drops-boundary-token",
        ["sampler-bracket", "sampler"],
        "sampling",
        "top-p keeps ranks with c_r < top_p * total, dropping the token that crosses the threshold, so the draw "
        "brackets a target of a smaller CDF",
        [
            Edit(
                SAMPLE,
                "keep = o.logical_and(in_top_k, o.less(c_prev, p_threshold))",
                "keep = o.logical_and(in_top_k, o.less(o.where(o.equal(rank, 0), c_prev, c), p_threshold))",
            )
        ],
        sampler=HOT,
    ),
    Mutant(
        "temperature-after-top-p",
        ["sampler-keep-set", "sampler"],
        "sampling",
        "the top-p set is chosen on the untempered distribution, temperature applied afterwards",
        [
            Edit(
                SAMPLE,
                "keep = o.logical_and(in_top_k, o.less(c_prev, p_threshold))",
                "raw = o.cumsum(o.where(in_top_k, o.exp(o.mul(o.sub(s, top), t_safe)), o.const(0.0, np.float32)), -1)\n"
                "raw_total = o.slice(raw, -1, -1, None)\n"
                "raw_threshold = o.where(o.less(o.const(top_p, np.float32), 1.0), "
                "o.mul(raw_total, o.const(top_p, np.float32)), o.mul(raw_total, 2.0))\n"
                "raw_prev = o.slice(o.pad_front(raw, -1, 1, 0.0), -1, 0, -1)\n"
                "keep = o.logical_and(in_top_k, o.less(raw_prev, raw_threshold))",
            )
        ],
        models=["tiny-gpt2"],
        sampler={"temperature": 0.5, "top_p": 0.6},
    ),
    Mutant(
        "fallback-any-kept",
        ["sampler-no-zero-prob", "sampler"],
        "sampling",
        "the fallback takes the last kept rank, not the last one with e_r > 0",
        [Edit(SAMPLE, "positive = o.logical_and(keep, o.greater(e, 0.0))", "positive = keep")],
        checked=False,  # the fallback needs u = 1, which spec rands never are
    ),
    Mutant(
        "normalised-fallback-last",
        ["sampler-no-zero-prob", "sampler"],
        "sampling",
        "probabilities normalised to sum 1 (12 x fl(1/12) < 1 - 2^-24 runs past the CDF), falling back to the "
        "last kept rank",
        [
            Edit(
                SAMPLE,
                "o.less_equal(c, target)",
                "o.less_equal(o.cumsum(o.div(e, kept_total), axis=-1), o.unsqueeze(o.const(u, np.float32), -1))",
            ),
            Edit(SAMPLE, "positive = o.logical_and(keep, o.greater(e, 0.0))", "positive = keep"),
        ],
        level="L0",  # the checker draws at 1 - 2^-24; within rounding of the spec's draw unless it lands on e_r = 0
    ),
    Mutant(
        "sampler-global-rng",
        ["determinism", "sampler"],
        "randomness",
        "step samples with a draw from a global RNG instead of its rand argument",
        [
            Edit(
                "model.Model.step",
                "sample_one(logits, rand, self.sampler)",
                "sample_one(logits, float(np.random.default_rng().random()) * 0.999, self.sampler)",
            )
        ],
        sampler=HOT,
        checked=False,  # caught, but a bug that changes run to run defeats the checker's replay (Hypothesis: Flaky)
    ),
    # -- randomness: the rand stream ------------------------------------------------------------------------
    Mutant(
        "rand-shifted",
        ["rand-by-position", "sampler"],
        "randomness",
        "decode samples with the rand of the previous call (a rand index off by one)",
        engine="rand-shifted",
        sampler=HOT,
    ),
    Mutant(
        "rand-reused",
        ["rand-by-position", "sampler"],
        "randomness",
        "every decode of a session samples with the rand of its first decode (the stream never advances)",
        engine="rand-reused",
        sampler=HOT,
    ),
    Mutant(
        "rand-reused-across-positions",
        ["rand-by-position"],
        "randomness",
        "generate draws the rand of position 0 for every token",
        [
            Edit("interface.generate", "rand_for(seed, state.pos))", "rand_for(seed, 0))"),
            Edit("interface.step_loop", "rand_for(seed, state.pos + 1))", "rand_for(seed, 0))"),
        ],
        checked=False,  # the checker passes rand to every decode itself
    ),
    Mutant(
        "rand-keyed-by-step-count",
        ["rand-by-position"],
        "randomness",
        "generate keys the stream by the number of draws, so the prompt length shifts it",
        [
            Edit("interface.generate", "rand_for(seed, state.pos))", "rand_for(seed, 0))"),
            Edit("interface.step_loop", "rand_for(seed, state.pos + 1))", "rand_for(seed, len(out) + 1))"),
        ],
        checked=False,  # the checker passes rand to every decode itself
    ),
    Mutant(
        "rand-from-hash",
        ["determinism", "rand-stream"],
        "randomness",
        "rand derived from Python's hash(), which differs between interpreters",
        [
            Edit(
                "rand.rand_for",
                "key = splitmix64(seed)",
                "return (hash(str((seed, position))) % 2**24) / 2**24",
            )
        ],
        checked=False,  # the checker passes rand to every decode itself
    ),
    Mutant(
        "rand-mixer-shift",
        ["rand-stream"],
        "randomness",
        "splitmix64 with the first shift 31 instead of 30",
        [Edit("rand.splitmix64", "(z ^ (z >> 30))", "(z ^ (z >> 31))")],
        checked=False,  # the checker passes rand to every decode itself
    ),
    # -- sessions: bugs of an engine's handles, with no spec code to edit -------------------------------------
    Mutant(
        "aliased-fork",
        ["states-are-values", "split-invariance", "determinism"],
        "sessions",
        "fork returns the same mutable session, so the two continuations share state",
        engine="aliased-fork",
        models=["tiny-gpt2"],
    ),
]

MUTANTS: dict[str, Mutant] = {m.name: m for m in _CATALOGUE}
assert len(MUTANTS) == len(_CATALOGUE), "mutant names must be unique"
CHECKED: dict[str, Mutant] = {name: m for name, m in MUTANTS.items() if m.checked}
