"""A correct implementation over the checker's JSON-lines protocol (the spec behind it) that spoils one reply on
purpose, for tests/test_fuzz_cli.py: ``python tests/fuzz_engine.py FILE`` where FILE holds JSON
{"reply": k, "path": [...], "value": v} (reply k gets v at that path; an empty path replaces the whole reply),
{"reply": k, "delete": [...]} or {"reply": k, "raw": "text"} (reply k is that line, as is)."""

from __future__ import annotations

import json
import sys

from lmstep.runtime.codec import encode_array, f32_value
from lmstep.spec import load


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        edit = json.load(f)
    model = None
    states: dict[int, object] = {}
    for n, line in enumerate(sys.stdin):
        req = json.loads(line)
        op, reply = req["op"], {"id": req["id"], "ok": True}
        if op == "hello":
            model = load(req["model"]["name"])
            reply |= {"vocab_size": model.vocab_size, "capabilities": ["fork", "state", "immutable"], "name": "fuzz"}
        elif op == "bye":
            return
        elif op == "init":
            states[len(states)] = model.init_state()
            reply["handle"] = len(states) - 1
        elif op == "run":
            state, logits = model.prefill(states[req["handle"]], req["tokens"])
            states[len(states)] = state
            reply |= {"handle": len(states) - 1, "logits": encode_array(logits)}
        elif op == "decode":
            state, out = model.step(states[req["handle"]], req["token"], f32_value(req["rand"]))
            states[len(states)] = state
            reply |= {"handle": len(states) - 1, "logits": encode_array(out.logits), "token": out.token}
        elif op == "fork":
            reply["handle"] = req["handle"]
        elif op == "state":
            reply["arrays"] = {k: encode_array(v) for k, v in states[req["handle"]].arrays().items()}
        text = json.dumps(reply)
        if n == edit["reply"]:
            text = _spoil(reply, edit)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _spoil(reply: dict, edit: dict) -> str:
    if "raw" in edit:
        return edit["raw"]
    if "delete" in edit:
        target = reply
        for key in edit["delete"][:-1]:
            target = target[key]
        target.pop(edit["delete"][-1], None)
        return json.dumps(reply)
    path = edit["path"]
    if not path:
        return json.dumps(edit["value"])
    target = reply
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = edit["value"]
    return json.dumps(reply)


if __name__ == "__main__":
    main()
