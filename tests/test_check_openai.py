"""An OpenAI-compatible completions server as an implementation under check (``--impl openai:URL``): a real
llama-cpp-python server started here on 127.0.0.1 (the llamacpp extra), and servers that are down, slow or answer
garbage, each a clear failure of that implementation (exit 1), never a crash. The grading of top-N
log-probabilities (runtime/check/logprobs.py) is tested on its own, with its negative controls."""

import http.server
import json
import threading
import time

import numpy as np
import pytest

from lmstep.runtime.check import Level, check, open_impl
from lmstep.runtime.check.llamacpp_server import free_port
from lmstep.runtime.check.logprobs import TopLogprobs, grade_logprobs, log_softmax
from lmstep.runtime.check.protocol import ImplementationError
from lmstep.runtime.cli import main
from lmstep.spec import load

# -- the grading of top-N log-probabilities -----------------------------------------------------------------


def top_rows(z: np.ndarray, n: int, shift: int = 0, noise: float = 0.0) -> TopLogprobs:
    lp = log_softmax(z) + noise
    rows = []
    for r in range(z.shape[0]):
        src = lp[(r + shift) % z.shape[0]]
        ids = np.argsort(-src, kind="stable")[:n]
        rows.append({int(i): float(src[i]) for i in ids})
    return TopLogprobs.rows(rows)


def test_logprobs_grading_and_its_controls():
    z = load("tiny-llama").unrolled([72, 101, 108, 108, 111])
    tol = 2e-5
    assert grade_logprobs(top_rows(z, 20), z, tol).level == Level.L1
    assert grade_logprobs(top_rows(z, 256), z, tol).level == Level.L1  # the whole distribution
    # a systematic offset of 1e-3 in every log-probability: not L1, but the same most likely tokens (L2)
    assert grade_logprobs(top_rows(z, 20, noise=1e-3), z, tol).level == Level.L2
    # rows shifted by one position (an echo off by one): the wrong distributions, caught
    assert grade_logprobs(top_rows(z, 20, shift=1), z, tol).level == Level.FAIL
    # a listed token that is not among the spec's top N
    bad = top_rows(z, 5)
    ids = list(bad.ids)
    ids[0] = ids[0].copy()
    ids[0][-1] = int(np.argmin(z[0]))
    assert grade_logprobs(TopLogprobs(tuple(ids), bad.values), z, tol).level <= Level.L2
    assert grade_logprobs(top_rows(z[:2], 5), z, tol).level == Level.FAIL  # a row missing


# -- a real server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """llama-cpp-python's server on tiny-llama, written with the id-spelled vocabulary (that server takes text
    prompts only), F32 KV cache, one thread (runtime/check/llamacpp_server.py); stopped after the module."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional: pip install -e '.[llamacpp]')")
    pytest.importorskip("uvicorn", reason="llama-cpp-python's server deps missing (pip install -e '.[llamacpp]')")
    from lmstep.runtime.check.llamacpp_server import serve

    with serve(load("tiny-llama"), tmp_path_factory.mktemp("server")) as url:
        yield url


SKIP = ["state", "batch"]  # a server shows no state and takes no batch of sessions


def one_setting(impl):
    """The adapter as a protocol-1 implementation: every request samples with --model's settings (protocol.speaks_v2
    reads ``protocol``), so one setting of the server's sampler is checked alone."""
    impl.protocol = 1
    return impl


def test_server_greedy_reaches_l1_through_its_logprobs(server, capsys):
    """One line of the CLI with --model's greedy settings: every row compared as the top-20 log-probabilities, the
    greedy token exactly (L1 on every law)."""
    model = load("tiny-llama")
    report = check(
        model, one_setting(open_impl(f"openai:{server} vocab=spelled", model)), max_examples=3, skip_laws=SKIP
    )
    assert report.passed, report.message
    assert all(s["n"] > 0 for s in report.laws.values()) and report.laws["sampler"]["level"] >= Level.L1


def test_server_sampling_is_graded_by_its_distribution(server, capsys):
    """Per-request settings (protocol 2: greedy, top-k, top-p, temperatures): the numbers stay L1, the server's own
    RNG makes the sampler L3 at best (the same rand draws another token); its top-p-before-temperature order fails
    the distribution test where top-p cuts (next test). With one top-k setting alone, every law passes at L3."""
    args = ["check", "-m", "tiny-llama", "--impl", f"openai:{server} vocab=spelled", "--examples", "2"]
    assert main([*args, "--skip-law", "state,batch", "--level", "L3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "sampler" in out
    model = load("tiny-llama", temperature=0.8, top_k=20)
    report = check(
        model,
        one_setting(open_impl(f"openai:{server} vocab=spelled", model)),
        required=Level.L3,
        max_examples=3,
        skip_laws=SKIP,
    )
    assert report.passed, report.message
    assert report.laws["sampler"]["level"] == Level.L3 and report.laws["recurrent"]["level"] == Level.L1


def test_server_sampler_applies_top_p_before_temperature(server):
    """llama-cpp-python samples top-k, top-p, min-p, then temperature: with T=0.5 and top-p 0.8 it draws tokens
    the spec's order gives probability 0 (the same finding as llama.cpp's native chain)."""
    model = load("tiny-llama", temperature=0.5, top_p=0.8)
    impl = one_setting(open_impl(f"openai:{server} vocab=spelled", model))
    report = check(model, impl, required=Level.L3, max_examples=6, skip_laws=SKIP)
    assert not report.passed and report.failed_law == "sampler" and "probability 0" in report.message


def test_server_echo_logprobs_are_not_openais(server):
    """llama-cpp-python 0.3.36 with echo returns one entry per prompt token and none for the generated one, each
    the distribution after its token rather than before (OpenAI's meaning); rows=echo says so and names rows=each."""
    model = load("tiny-llama")
    impl = open_impl(f"openai:{server} vocab=spelled rows=echo", model)
    with pytest.raises(ImplementationError, match="echo gave 3 log-probability entries .* use rows=each"):
        impl.run(impl.init(), [1, 2, 3])


def test_token_id_prompts_refused_by_a_text_only_server(server):
    model = load("tiny-llama")
    impl = open_impl(f"openai:{server}", model)
    with pytest.raises(ImplementationError, match="HTTP .*use vocab=spelled"):
        impl.run(impl.init(), [1, 2, 3])


# -- servers that are down, slow or broken ------------------------------------------------------------------


class Fake(http.server.BaseHTTPRequestHandler):
    reply: bytes = b""
    delay: float = 0.0

    def do_GET(self):  # /v1/models
        self.send_response(404)
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(self.reply)
        except OSError:  # the client gave up first
            pass

    def log_message(self, *args):
        pass


def fake_server(reply: bytes, delay: float = 0.0) -> tuple[str, http.server.HTTPServer]:
    handler = type("Handler", (Fake,), {"reply": reply, "delay": delay})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/v1", srv


def ok_reply(top: dict, token: str = "token_id:5") -> bytes:
    return json.dumps({"choices": [{"logprobs": {"tokens": [token], "top_logprobs": [top]}}]}).encode()


GARBAGE = [
    (b"<html>busy</html>", "the reply is not JSON"),
    (b'{"error": "overloaded"}', "no choices[0]"),
    (json.dumps({"choices": [{"text": "x"}]}).encode(), "has no logprobs"),
    (ok_reply({"token_id:5": "high"}), "not a number"),
    (ok_reply({"hello": -0.1}), "cannot tell which token id"),
    (json.dumps({"choices": [{"logprobs": {"tokens": [], "top_logprobs": []}}]}).encode(), "gave 0"),
]


@pytest.mark.parametrize("reply,message", GARBAGE)
def test_garbage_is_a_failure_of_the_server(reply, message):
    url, srv = fake_server(reply)
    try:
        model = load("tiny-gpt2")
        report = check(model, open_impl(f"openai:{url}", model), required=Level.L1, max_examples=3)
        assert not report.passed and report.failed_law == "protocol" and message in report.message
    finally:
        srv.shutdown()


def test_wrong_numbers_are_a_finding_not_a_protocol_error():
    url, srv = fake_server(ok_reply({f"token_id:{i}": -5.5 for i in range(20)}))
    try:
        model = load("tiny-gpt2")
        report = check(model, open_impl(f"openai:{url}", model), required=Level.L1, max_examples=3)
        assert not report.passed and report.failed_law in {"unrolled", "causality", "recurrent"}, report.message
    finally:
        srv.shutdown()


def test_slow_and_down_servers_through_the_cli(capsys):
    url, srv = fake_server(ok_reply({"token_id:1": -0.1}), delay=3.0)
    try:
        assert main(["check", "-m", "tiny-llama", "--impl", f"openai:{url} timeout=0.5", "--examples", "2"]) == 1
        assert "no reply within 0.5 s" in capsys.readouterr().out
    finally:
        srv.shutdown()
    port = free_port()  # nothing listens there
    assert main(["check", "-m", "tiny-llama", "--impl", f"openai:http://127.0.0.1:{port}", "--examples", "2"]) == 1
    assert "cannot reach" in capsys.readouterr().out
    assert main(["check", "-m", "tiny-llama", "--impl", "openai:localhost:8000"]) == 2
    assert "give the server's URL" in capsys.readouterr().err
