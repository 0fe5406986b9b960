"""The step graph decided for greedy sampling: what onnxruntime runs when the sampler's temperature is 0.

The step graph computes the whole sampler (SPEC.md §3) for any settings, since they are graph inputs; its last
node selects the greedy token when temperature == 0: ``token = Where(Equal(temperature, 0), ArgMax(logits),
sampled)``. The sampled branch sorts the whole vocabulary (TopK with k = V) and takes a cumulative sum over it:
profiled on a GPT-2-small step, TopK alone was 14% of the step's time. For temperature 0 the runtime therefore
opens a copy of the graph in which the token output is that ArgMax and the nodes only the sampled branch needed
are gone: the same nodes compute the same values, minus the ones whose result the Where would discard. The
sampler inputs stay declared (unused), so the feeds are the same. The folder's step.onnx is not changed.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from .contract import TOKEN_OUTPUT


def greedy_step(proto: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of step graph ``proto`` whose token is the greedy branch of its final Where, dead nodes removed;
    None if the graph does not end in that pattern (then the full graph runs)."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    node = producer.get(TOKEN_OUTPUT)
    while node is not None and node.op_type == "Identity":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Where" or not _is_temperature_zero(producer.get(node.input[0]), producer):
        return None
    greedy = node.input[1]
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    rewired = [n for n in out.graph.node if TOKEN_OUTPUT not in n.output]
    rewired.append(onnx.helper.make_node("Identity", [greedy], [TOKEN_OUTPUT], name="greedy_token"))
    del out.graph.node[:]
    out.graph.node.extend(_live(rewired, [o.name for o in out.graph.output]))
    return out


def _is_temperature_zero(node: onnx.NodeProto | None, producer: dict[str, onnx.NodeProto]) -> bool:
    """``node`` is Equal(temperature, 0) (the constant on either side)."""
    if node is None or node.op_type != "Equal" or "temperature" not in node.input:
        return False
    other = next(i for i in node.input if i != "temperature")
    const = producer.get(other)
    if const is None or const.op_type != "Constant":
        return False
    value = next((a.t for a in const.attribute if a.name == "value"), None)
    return value is not None and numpy_helper.to_array(value).size == 1 and float(numpy_helper.to_array(value)) == 0


def _live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes some output depends on, in their original (topological) order."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    needed, stack = set(), [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(producer[x] for x in nodes[i].input if x in producer)
    return [node for i, node in enumerate(nodes) if i in needed]
