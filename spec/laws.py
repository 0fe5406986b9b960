"""The laws, one place: every law the project states, tests, proves or checks has an id here.

Data only. Tests name a law with ``@pytest.mark.law(ID)`` (a property test), ``@pytest.mark.control(ID)`` (a
negative control) or ``@pytest.mark.export(ID)`` (the law on the exported ONNX graphs); a proof obligation names
it in ``Obligation.law`` (proofs/obligations.py); a checker law maps to it in ``runtime/check/lockstep.py``
``LAWS``; a mutant of the catalogue (``lmstep/mutants.py``) lists the laws it breaks. ``lmstep laws`` and
docs/laws.md show, per law, everything that refers to it.

``anchor`` is the law's place in SPEC.md (an explicit ``<a id>``), so the statement here is a summary and the
specification text stays normative. ``needs`` is the evidence the law must keep (tests/test_laws_index.py fails
when one goes missing): ``test`` a property test of the spec, ``control`` a negative control (a marked test or a
catalogue mutant that breaks the law and is run somewhere), ``proof`` a Z3 obligation, ``checker`` a checker law
of ``lmstep check``, ``export`` a test of the exported graphs. ``kind``: "law" for a property of the spec that an
implementation must share (the spec itself is checked against it, so a mutant of the spec can break it);
"conformance" for a comparison of an implementation with the spec (the spec has no second computation to
compare, so only the checker and the export tests exercise it); "fact" for mathematics the spec relies on that
only the proofs establish.
"""

from __future__ import annotations

import attrs

EVIDENCE = ("test", "control", "proof", "checker", "export")
KINDS = ("law", "conformance", "fact")


@attrs.frozen
class Law:
    id: str
    statement: str
    anchor: str  # SPEC.md#law-<id>
    section: str  # the SPEC.md section the anchor is in, e.g. "§1"
    needs: tuple[str, ...] = ("test", "control")
    kind: str = "law"


def _law(law_id: str, section: str, statement: str, needs: tuple[str, ...], kind: str = "law") -> Law:
    return Law(law_id, statement, f"SPEC.md#law-{law_id}", section, needs, kind)


LAWS: tuple[Law, ...] = (
    _law(
        "determinism",
        "§1",
        "The same model, state, tokens and rand give bitwise identical logits, state and token, in any process.",
        ("test", "control", "checker", "export"),
    ),
    _law(
        "states-are-values",
        "§1",
        "step and prefill never change their arguments: any state may be stepped again, and two continuations "
        "of one state (forks) each equal a fresh computation.",
        ("test", "control", "checker", "export"),
    ),
    _law(
        "unrolled-eq-recurrent",
        "§1",
        "prefill(state, tokens) gives the logits and the final state of stepping the same tokens one by one.",
        EVIDENCE,
    ),
    _law(
        "split-invariance",
        "§1",
        "Any split of a sequence into chunks, each consumed by prefill or by repeated step, gives the logits and "
        "final state of one prefill.",
        EVIDENCE,
    ),
    _law(
        "causality",
        "§1",
        "The logits at a position never depend on later tokens.",
        ("test", "control", "proof", "checker"),
    ),
    _law(
        "batch-invariance",
        "§1",
        "A sequence inside a batch gets the logits and state it gets alone (equal lengths; or left-padded with a "
        "key mask, attention models).",
        ("test", "control", "checker", "export"),
    ),
    _law(
        "rand-by-position",
        "§1",
        "The token at position p is sampled with rand_for(seed, p), however the prompt was consumed.",
        ("test", "control"),
    ),
    _law(
        "rand-stream",
        "§2",
        "rand_for(seed, p) is SPEC.md §2's splitmix64 stream: the published vectors, multiples of 2^-24 in [0, 1).",
        ("test", "control"),
    ),
    _law(
        "sampler",
        "§3",
        "The sampled token is the one SPEC.md §3's algorithm gives, to the bit (an independent scalar "
        "implementation of the text agrees).",
        ("test", "control", "checker", "export"),
    ),
    _law(
        "sampler-bracket",
        "§3",
        "The chosen rank r brackets the target: c_{r-1} <= u * c_{m-1} < c_r.",
        ("test", "control", "proof"),
    ),
    _law(
        "sampler-keep-set",
        "§3",
        "The chosen rank is kept: r < k (top-k) and c_{r-1} < top_p * total (top-p, strict).",
        ("test", "control", "proof"),
    ),
    _law(
        "sampler-no-zero-prob",
        "§3",
        "A rank with e_r = 0 (cut off, or exp underflowed) is never chosen, even when rounding runs past the CDF.",
        ("test", "control", "proof"),
    ),
    _law(
        "sampler-greedy",
        "§3",
        "Temperature 0, or a z / T that overflows, gives the lowest index among the maximal logits.",
        ("test", "control", "proof"),
    ),
    _law(
        "sliding-window",
        "§5",
        "With sliding_window = W each query sees the W most recent keys of its sequence, its own included: a "
        "state keeps min(pos, W - 1) keys and values per layer, and with L layers the logits at p never depend "
        "on tokens before p - L (W - 1).",
        ("test", "control", "proof"),
    ),
    _law(
        "state-contract",
        "§8",
        "A state is pos plus the named tensors of State.arrays(); after every operation an implementation's state "
        "equals the spec's, tensor by tensor.",
        ("test", "control", "checker", "export"),
        kind="conformance",
    ),
    _law(
        "numeric-tolerance",
        "§8",
        "Two computations of one quantity (two forms of the spec, or an implementation and the spec) agree within "
        "the measured tolerance, not bitwise: float32 rounding makes + and * non-associative.",
        ("test", "control", "proof", "checker"),
        kind="conformance",
    ),
    _law(
        "softmax-shift",
        "§4",
        "softmax(a - c) = softmax(a) for every c, so subtracting the max (or a running max) changes nothing exactly.",
        ("proof",),
        kind="fact",
    ),
    _law(
        "compiled-algorithm",
        "§10",
        "A folder `lmstep compile` writes computes its algorithm: for every prompt BOS x_1 .. x_n SEP within the "
        "bound, greedy decoding gives the answer and EOS, each decision by more than float32 rounding in any order.",
        ("test", "control", "proof", "export"),
    ),
    _law(
        "depth-needs-nonlinearity",
        "§4",
        "Linear layers compose to one linear layer; the nonlinearities are what depth buys (XOR needs one).",
        ("proof",),
        kind="fact",
    ),
)

BY_ID: dict[str, Law] = {law.id: law for law in LAWS}
