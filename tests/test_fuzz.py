"""Fuzzing the parsers of untrusted input: every malformed file or reply gives lmstep's one-line error class,
never another exception, a hang or a partial result. The number of cases per target is FUZZ_CASES (quick
profile) or 10x that under ``--hypothesis-profile thorough``."""

import json
import struct
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstep.runtime.check import cetrace
from lmstep.runtime.check.external import CommandImpl
from lmstep.runtime.check.protocol import ImplementationError
from lmstep.runtime.codec import CodecError, decode_array, f32_value
from lmstep.runtime.trace import schema
from lmstep.spec import load
from lmstep.spec.errors import LmstepError
from lmstep.spec.hf_config import read_config
from lmstep.spec.safetensors_io import read_safetensors

FUZZ_CASES = 200
fuzz = settings(max_examples=FUZZ_CASES, suppress_health_check=list(HealthCheck), deadline=None)
if settings.default.max_examples >= 300:  # the thorough profile
    fuzz = settings(fuzz, max_examples=10 * FUZZ_CASES)


def valid_safetensors() -> bytes:
    header = {
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
        "__metadata__": {"format": "pt"},
    }
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + bytes(range(32))


@st.composite
def mutated(draw, base: bytes):
    """A valid file with bytes flipped, cut, inserted or its header length rewritten."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) >= 8:
            data[:8] = struct.pack("<Q", draw(st.integers(0, 2**64 - 1)))
    return bytes(data)


@fuzz
@given(st.one_of(st.binary(max_size=200), mutated(valid_safetensors())))
def test_safetensors_reader_never_crashes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(data)
    try:
        tensors = read_safetensors(path)
    except LmstepError as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        assert all(isinstance(t, np.ndarray) for t in tensors.values())  # each in its own dtype (BF16 as bits)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
config_keys = st.sampled_from(
    [
        "architectures",
        "model_type",
        "vocab_size",
        "hidden_size",
        "n_embd",
        "num_hidden_layers",
        "n_layer",
        "num_attention_heads",
        "n_head",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "rope_theta",
        "rope_scaling",
        "state_size",
        "expand",
        "time_step_rank",
        "conv_kernel",
        "tie_word_embeddings",
    ]
)


@fuzz
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"architectures": st.sampled_from([["LlamaForCausalLM"], ["GPT2LMHeadModel"], ["MambaForCausalLM"]])},
            optional={},
        ).flatmap(lambda d: st.dictionaries(config_keys, json_values, max_size=8).map(lambda e: {**d, **e})),
    )
)
def test_config_reader_never_crashes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(raw))
    try:
        read_config(path)
    except LmstepError as err:
        assert "\n" not in str(err)


@fuzz
@given(st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=30)), min_size=0, max_size=5))
def test_golden_trace_reader_never_crashes(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("tr") / "t.jsonl"
    path.write_text("\n".join(lines))
    try:
        schema.read(path)
    except LmstepError as err:
        assert "\n" not in str(err)


@fuzz
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "format": st.just(cetrace.FORMAT),
                "version": st.just(1),
                "model": json_values,
                "impl": json_values,
                "ops": json_values,
            }
        ),
    )
)
def test_counterexample_reader_and_replay_never_crash(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cx") / "cex.json"
    path.write_text(json.dumps(doc))
    try:
        parsed = cetrace.read(path)
        model = cetrace.open_model(parsed)
        from lmstep.runtime.check import open_impl

        cetrace.replay(parsed, model, open_impl("spec", model))
    except (LmstepError, KeyError, TypeError) as err:
        # KeyError/TypeError would be crashes: fail loudly with what was fed in
        assert isinstance(err, LmstepError), f"{type(err).__name__}: {err} on {doc!r}"


@fuzz
@given(json_values)
def test_codec_accepts_or_refuses_cleanly(obj):
    for fn in (decode_array, f32_value):
        try:
            fn(obj)
        except CodecError as err:
            assert "\n" not in str(err)


REPLIER = r"""
import json, sys
replies = json.loads(sys.argv[1])
for i, line in enumerate(sys.stdin):
    if i < len(replies):
        sys.stdout.write(replies[i] + "\n"); sys.stdout.flush()
    else:
        break
"""


@settings(fuzz, max_examples=max(20, fuzz.max_examples // 10))  # each case starts a process
@given(
    st.lists(
        st.one_of(json_values.map(json.dumps), st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t)),
        min_size=0,
        max_size=4,
    )
)
def test_protocol_client_turns_any_reply_into_an_implementation_error(replies):
    """A program answering garbage (any JSON, any text, or nothing) is a failure of that program."""
    hello = json.dumps({"vocab_size": 256, "capabilities": []})
    cmd = f"{sys.executable} -c {json.dumps(REPLIER)} {json.dumps(json.dumps([hello] + replies))}"
    try:
        impl = CommandImpl(cmd, {"vocab_size": 256}, timeout=5)
        try:
            h = impl.init()
            impl.run(h, [1, 2])
            impl.decode(h, 3, 0.5)
        finally:
            impl.close()
    except ImplementationError as err:
        assert err.args and "\n" not in str(err)


def test_concurrent_processes_generate_identical_tokens(tmp_path):
    """Several processes generating with the same seed at the same time give identical results."""
    import subprocess

    code = (
        "import json; from lmstep.spec import load;"
        "m = load('tiny-mamba', temperature=0.9, top_k=30);"
        "print(json.dumps(m.generate(list(b'concurrent'), 40, seed=99)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1 and json.loads(outs[0]) == load("tiny-mamba", temperature=0.9, top_k=30).generate(
        list(b"concurrent"), 40, seed=99
    )
