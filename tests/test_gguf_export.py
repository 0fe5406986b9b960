"""``lmstep export --format gguf``: float32 GGUF files that llama.cpp loads and runs, computing the spec's function
(runtime/ggufio). Needs the gguf package (and llama-cpp-python for the runs): the llamacpp extra."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf not installed (optional: pip install -e '.[llamacpp]')")

from lmstep.runtime.cli import main  # noqa: E402
from lmstep.runtime.ggufio import families, write_gguf  # noqa: E402
from lmstep.runtime.ggufio.vocab import IDS_LIMIT, char_id, id_char  # noqa: E402
from lmstep.spec import load  # noqa: E402
from lmstep.spec.conformance import FORMS, rel_err  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
TOKENS = [72, 101, 108, 108, 111, 44, 32, 200, 3, 0, 255, 17, 96]


def llama_logits(model, path: Path, tokens: list[int]) -> np.ndarray:
    """Every row of one llama_decode of ``tokens`` from an empty context, through llama.cpp's C API."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional: pip install -e '.[llamacpp]')")
    from lmstep.runtime.check.llamacpp_impl import LlamaCppImpl

    impl = LlamaCppImpl.open(f"{path} seqs=2", model)
    try:
        return impl.run(impl.init(), tokens)[1]
    finally:
        impl.close()


def export(model, path: Path, **kw) -> Path:
    write_gguf(model, path, **kw)
    return path


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-mamba", "llama-mqa-headdim-bias-bf16", "mamba-base"])
def test_llama_cpp_runs_the_export_at_l1(tmp_path, name):
    """Llama (GQA, RoPE, head_dim != hidden/heads, q/k/v/o biases) and Mamba computed by llama.cpp from our GGUF
    agree with the spec within the L1 tolerance on every row of a chunk."""
    model = load(name if name.startswith("tiny") else FIXTURES / name)
    tokens = [t % model.vocab_size for t in TOKENS]
    got = llama_logits(model, export(model, tmp_path / "m.gguf"), tokens)
    assert rel_err(got, model.unrolled(tokens)) <= FORMS[model.arch]


def test_gpt2_differs_by_llama_cpps_gelu_table(tmp_path):
    """llama.cpp's CPU GELU reads an fp16 lookup table (ggml-cpu's GGML_GELU_FP16): GPT-2 logits then differ from
    the spec by ~2e-4 of the logit scale, beyond L1 (2e-5), while every greedy choice agrees (docs/engines.md)."""
    model = load("tiny-gpt2")
    want = model.unrolled(TOKENS)
    got = llama_logits(model, export(model, tmp_path / "g.gguf"), TOKENS)
    assert FORMS["gpt2"] < rel_err(got, want) < 1e-3
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_the_rope_permutation_is_what_makes_llama_agree(tmp_path, monkeypatch):
    """Negative control: the same export without permuting Wq/Wk rows into llama.cpp's adjacent-pair RoPE order
    computes another function, and the comparison above sees it."""
    model = load("tiny-llama")
    monkeypatch.setitem(families.TRANSFORMS, "rope_q", families.TRANSFORMS["T"])
    monkeypatch.setitem(families.TRANSFORMS, "rope_k", families.TRANSFORMS["T"])
    got = llama_logits(model, export(model, tmp_path / "bad.gguf"), TOKENS)
    assert rel_err(got, model.unrolled(TOKENS)) > 100 * FORMS["llama"]


def test_mamba_needs_a_not_a_log(tmp_path, monkeypatch):
    """Negative control: llama.cpp's Mamba stores A = -exp(A_log); writing A_log itself is caught."""
    model = load("tiny-mamba")
    monkeypatch.setitem(families.TRANSFORMS, "neg_exp", families.TRANSFORMS["as_is"])
    got = llama_logits(model, export(model, tmp_path / "bad.gguf"), TOKENS)
    assert rel_err(got, model.unrolled(TOKENS)) > 100 * FORMS["mamba"]


def test_keys_to_spec_undoes_the_row_permutation():
    k = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)  # [heads, positions, D]
    rows = families._interleave_rows(k.transpose(0, 2, 1).reshape(16, 3), 2)  # as Wk rows: [heads*D, positions]
    cached = rows.reshape(2, 8, 3).transpose(0, 2, 1)  # what llama.cpp caches per position
    assert not np.array_equal(cached, k)
    assert np.array_equal(families.keys_to_spec(cached), k)


def test_export_cli_writes_and_refuses(tmp_path, capsys):
    out = tmp_path / "m.gguf"
    assert main(["export", "-m", "tiny-gpt2", "--format", "gguf", "-o", str(out)]) == 0
    assert "GGUF float32, bytes vocabulary" in capsys.readouterr().out and out.stat().st_size > 4 * 100_000
    before = out.read_bytes()
    assert main(["export", "-m", "tiny-llama", "--format", "gguf", "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == before
    cases = [
        (["-m", "tiny-llama", "--format", "gguf", "--external"], "apply to --format onnx"),
        (["-m", "tiny-llama", "--format", "ggml"], "unknown --format"),
        (["-m", "tiny-llama", "--vocab", "ids"], "--vocab applies to --format gguf"),
        (["-m", "tiny-llama", "--format", "gguf", "--vocab", "words"], "unknown vocabulary"),
        (["-m", str(FIXTURES / "mamba-bias-rank-f16-sharded"), "--format", "gguf"], "no in_proj/out_proj bias"),
    ]
    for args, message in cases:
        target = tmp_path / "x.gguf"
        assert main(["export", *args, "-o", str(target)]) == 2, args
        assert message in capsys.readouterr().err and not target.exists(), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no temporary file left behind


def test_export_needs_no_torch(tmp_path):
    """The exporter needs numpy and gguf only: in a fresh process it never imports torch or transformers."""
    code = (
        "import sys; from lmstep.spec import load; from lmstep.runtime.ggufio import write_gguf; "
        f"write_gguf(load({str(FIXTURES / 'llama-mha-tied')!r}), {str(tmp_path / 'x.gguf')!r}); "
        "assert not {'torch', 'transformers', 'sentencepiece'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def tokenize(path: Path, text: str) -> list[int]:
    L = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install -e '.[llamacpp]')")
    from lmstep.runtime.check.llamacpp_impl import _lib

    _lib()
    params = L.llama_model_default_params()
    params.vocab_only = True
    lm = L.llama_model_load_from_file(str(path).encode(), params)
    try:
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(L.llama_model_get_vocab(lm), raw, len(raw), buf, len(buf), True, False)
        return list(buf[:n])
    finally:
        L.llama_model_free(lm)


def test_vocabularies_tokenize_as_the_model_does(tmp_path):
    """Bytes for the built-ins (no BOS, UTF-8 bytes exactly); one character per id (--vocab ids); a checkpoint's
    SentencePiece-style tokenizer.json as the tokenizers library splits the same text."""
    text = "Hé, ~\\x"
    assert tokenize(export(load("tiny-llama"), tmp_path / "b.gguf"), text) == list(text.encode())
    ids = [0, 5, 255, 17, 17]
    spelled = export(load("tiny-llama"), tmp_path / "i.gguf", vocab="ids")
    assert tokenize(spelled, "".join(id_char(i) for i in ids)) == ids
    from tokenizers import Tokenizer

    folder = FIXTURES / "gpt2-base"
    spm = export(load(folder), tmp_path / "s.gguf")
    ref = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for sample in ["the cat sat on the mat", "hello world", "abc xyz"]:
        assert tokenize(spm, sample) == ref.encode(sample).ids, sample


def test_id_spelling_round_trips():
    for i in [0, 1, 65533, 65534, 65535, IDS_LIMIT - 1]:
        assert char_id(id_char(i)) == i
    assert char_id("a") is None and char_id("ab") is None
