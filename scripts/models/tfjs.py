"""TensorFlow.js graph models without TensorFlow: loading, a numpy reference interpreter, and
an ONNX converter.

- `load` parses model.json (a GraphDef in JSON) and de-quantises the weight shards.
- `interpret` executes the graph in NHWC with float64 numpy following TensorFlow's op
  definitions (npops). It is the independent reference for parity checks.
- `to_onnx` writes an NCHW ONNX graph (opset 17) with explicit paddings. Activations of rank 4
  are kept in NCHW; constants that broadcast against them in NHWC are transposed to match.
  Unknown ops or attributes are errors naming the node, never silently wrong results.

Supported ops: Placeholder, Const, Identity, Conv2D, _FusedConv2D (BiasAdd[, Relu|Relu6]),
DepthwiseConv2dNative, Conv2DBackpropInput, MaxPool, AvgPool, Add, AddV2, AddN, Mul, Sub,
Relu, Relu6, Sigmoid, Mean, Softmax, ResizeBilinear.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import npops

OPSET = 17


class TfjsError(ValueError):
    pass


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    attr: dict

    def s(self, key, default=None):
        v = self.attr.get(key)
        return base64.b64decode(v["s"]).decode() if v and "s" in v else default

    def ints(self, key, default=None):
        v = self.attr.get(key)
        if not v:
            return default
        return [int(i) for i in v["list"].get("i", [])]

    def b(self, key, default=False):
        v = self.attr.get(key)
        return bool(v.get("b", False)) if v else default

    def strs(self, key):
        v = self.attr.get(key)
        return [base64.b64decode(x).decode() for x in v["list"].get("s", [])] if v else []


@dataclass
class Graph:
    nodes: list[Node]          # topologically sorted, Const nodes included
    weights: dict[str, np.ndarray]
    placeholders: dict[str, list[int]]

    def node(self, name):
        return self._by_name[name]

    def __post_init__(self):
        self._by_name = {n.name: n for n in self.nodes}


def _tensor_name(ref: str) -> str:
    """'node:0' → 'node'; multi-output refs other than :0 are not used by these models."""
    name, _, idx = ref.partition(":")
    if idx not in ("", "0"):
        raise TfjsError(f"reference to output {idx} of {name} is not supported")
    return name


def load(model_json: bytes, shards: dict[str, bytes]) -> Graph:
    j = json.loads(model_json)
    if j.get("format") != "graph-model":
        raise TfjsError(f"not a TFJS graph model (format {j.get('format')!r})")
    weights = {}
    for group in j["weightsManifest"]:
        try:
            buf = b"".join(shards[p] for p in group["paths"])
        except KeyError as e:
            raise TfjsError(f"weight shard {e.args[0]} missing") from None
        off = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qdt = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[q["dtype"]]
                a = np.frombuffer(buf, qdt, n, off)
                off += a.nbytes
                a = a.astype(np.float32) if q["dtype"] == "float16" else \
                    (a.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"]))
            else:
                dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
                a = np.frombuffer(buf, dt, n, off)
                off += a.nbytes
            weights[w["name"]] = a.reshape(shape)
        if off != len(buf):
            raise TfjsError(f"weight shards {group['paths']}: {len(buf)} bytes, manifest uses {off}")
    raw = [Node(n["name"], n["op"], [i for i in n.get("input", []) if not i.startswith("^")], n.get("attr", {}))
           for n in j["modelTopology"]["node"]]
    by_name = {n.name: n for n in raw}
    order, state = [], {}

    def visit(n: Node):  # iterative DFS topological sort
        stack = [(n, False)]
        while stack:
            cur, done = stack.pop()
            if done:
                state[cur.name] = 2
                order.append(cur)
                continue
            if state.get(cur.name):
                continue
            state[cur.name] = 1
            stack.append((cur, True))
            for ref in cur.inputs:
                dep = by_name.get(_tensor_name(ref))
                if dep is None:
                    raise TfjsError(f"node {cur.name}: input {ref} does not exist")
                if not state.get(dep.name):
                    stack.append((dep, False))

    for n in raw:
        visit(n)
    ph = {n.name: [int(d["size"]) for d in n.attr["shape"]["shape"]["dim"]] for n in raw if n.op == "Placeholder"}
    for n in raw:
        if n.op == "Const" and n.name not in weights:
            raise TfjsError(f"Const {n.name} has no weight in the manifest")
    return Graph(order, weights, ph)


# ------------------------------------------------------------------ numpy reference (NHWC)

def _hw(v):  # NHWC 4-list → (h, w)
    return (v[1], v[2])


def interpret(g: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run every node; returns all tensors by node name (float64 for float tensors)."""
    env: dict[str, np.ndarray] = {}
    for n in g.nodes:
        x = [env[_tensor_name(i)] for i in n.inputs]
        op = n.op
        if op == "Const":
            y = g.weights[n.name]
            y = y.astype(np.float64) if y.dtype.kind == "f" else y
        elif op == "Placeholder":
            y = np.asarray(feeds[n.name], np.float64)
            want = g.placeholders[n.name]
            if y.ndim != len(want) or any(w not in (-1, d) for w, d in zip(want, y.shape)):
                raise TfjsError(f"input {n.name}: shape {y.shape} does not fit {want}")
        elif op == "Identity":
            y = x[0]
        elif op in ("Conv2D", "_FusedConv2D"):
            if n.s("data_format", "NHWC") != "NHWC":
                raise TfjsError(f"{n.name}: data_format {n.s('data_format')}")
            y = npops.conv2d(x[0], x[1], _hw(n.ints("strides")), n.s("padding"), _hw(n.ints("dilations", [1] * 4)))
            if op == "_FusedConv2D":
                y = _fused_tail(n, y, x[2:])
        elif op == "DepthwiseConv2dNative":
            y = npops.depthwise_conv2d(x[0], x[1], _hw(n.ints("strides")), n.s("padding"),
                                       _hw(n.ints("dilations", [1] * 4)))
        elif op == "Conv2DBackpropInput":
            sizes = [int(v) for v in x[0]]
            y = npops.conv2d_transpose(x[2], x[1], (sizes[1], sizes[2]), _hw(n.ints("strides")), n.s("padding"))
        elif op in ("MaxPool", "AvgPool"):
            y = npops.pool(x[0], _hw(n.ints("ksize")), _hw(n.ints("strides")), n.s("padding"),
                           "max" if op == "MaxPool" else "avg")
        elif op in ("Add", "AddV2", "BiasAdd"):
            y = x[0] + x[1]
        elif op == "AddN":
            y = sum(x[1:], x[0])
        elif op == "Sub":
            y = x[0] - x[1]
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "Relu":
            y = np.maximum(x[0], 0)
        elif op == "Relu6":
            y = np.clip(x[0], 0, 6)
        elif op == "Sigmoid":
            y = npops.sigmoid(x[0])
        elif op == "Mean":
            axes = tuple(int(a) for a in np.atleast_1d(x[1]))
            y = x[0].mean(axis=axes, keepdims=n.b("keep_dims"))
        elif op == "Softmax":
            y = npops.softmax(x[0], axis=-1)
        elif op == "ResizeBilinear":
            y = npops.resize_bilinear(x[0], [int(v) for v in x[1]], n.b("align_corners"), n.b("half_pixel_centers"))
        else:
            raise TfjsError(f"op {op} (node {n.name}) is not supported by the interpreter")
        env[n.name] = y
    return env


def _check_fused(n: Node) -> list[str]:
    fused = n.strs("fused_ops")
    if fused[:1] != ["BiasAdd"] or any(f not in ("BiasAdd", "Relu", "Relu6") for f in fused) or \
            ("Relu" in fused and "Relu6" in fused):
        raise TfjsError(f"{n.name}: fused_ops {fused} not supported")
    return fused


def _fused_tail(n: Node, y, extra):
    fused = _check_fused(n)
    y = y + extra[0]
    if "Relu" in fused:
        y = np.maximum(y, 0)
    if "Relu6" in fused:
        y = np.clip(y, 0, 6)
    return y


# ------------------------------------------------------------------ ONNX converter (NCHW)

class _Builder:
    def __init__(self, g: Graph, shapes: dict[str, tuple]):
        self.g, self.shapes = g, shapes  # NHWC shapes from a reference run
        self.nodes, self.inits, self.names = [], [], {}
        self.renames: dict[str, str] = {}  # TFJS tensor → ONNX name (placeholder, Identity)

    def nm(self, node_name):
        return self.renames.get(node_name, node_name)

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def add(self, op, ins, out, name=None, **attrs):
        self.nodes.append(helper.make_node(op, ins, [out], name=name or out, **attrs))
        return out

    def operand(self, ref: str, other_rank: int):
        """Name of an input tensor in ONNX layout; constants are laid out for NCHW broadcast."""
        src = _tensor_name(ref)
        node = self.g.node(src)
        if node.op != "Const":
            return self.nm(src)
        c = self.g.weights[src].astype(np.float32)
        if other_rank == 4:
            if c.ndim == 1 and c.size > 1:
                c = c.reshape(-1, 1, 1)
            elif c.ndim == 4:
                c = c.transpose(0, 3, 1, 2)
            elif c.ndim not in (0, 1):
                raise TfjsError(f"constant {src} of shape {c.shape} broadcast against NHWC tensor")
        key = f"{src}__nchw" if other_rank == 4 else src
        if key not in self.names:
            self.names[key] = self.const(key, c)
        return self.names[key]


def _explicit_pads(n: Node, in_hw, k, s, d=(1, 1)):
    pad = n.s("padding")
    if pad == "VALID":
        return [0, 0, 0, 0]
    if pad == "SAME":
        (t, b), (l, r) = npops.same_pads(in_hw[0], k[0], s[0], d[0]), npops.same_pads(in_hw[1], k[1], s[1], d[1])
        return [t, l, b, r]
    raise TfjsError(f"{n.name}: padding {pad!r} not supported")


def to_onnx(g: Graph, shapes: dict[str, tuple], input_name: str, outputs: dict[str, str],
            graph_name: str, doc: str) -> onnx.ModelProto:
    """outputs: TFJS node name → ONNX output name. shapes: NHWC shapes of a reference run."""
    b = _Builder(g, shapes)
    rank = {n: len(s) for n, s in shapes.items()}
    if len(g.placeholders) != 1:
        raise TfjsError(f"expected one input placeholder, found {list(g.placeholders)}")
    ph_name = next(iter(g.placeholders))
    renames = b.renames
    renames[ph_name] = input_name
    ph_shape = g.placeholders[ph_name]
    nm = b.nm

    for n in g.nodes:
        op, o = n.op, nm(n.name)
        ins = [_tensor_name(i) for i in n.inputs]
        if op in ("Const", "Placeholder"):
            continue
        if op == "Identity":
            renames[n.name] = nm(ins[0])
            continue
        in_shape = shapes[ins[0]] if ins else None
        if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative"):
            w = g.weights[ins[1]].astype(np.float32)
            st, dl = _hw(n.ints("strides")), _hw(n.ints("dilations", [1] * 4))
            if op == "DepthwiseConv2dNative":
                kh, kw, c, m = w.shape
                wt, group = w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw), c
            else:
                wt, group = w.transpose(3, 2, 0, 1), 1
            conv_in = [nm(ins[0]), b.const(f"{n.name}/W", wt)]
            fused = _check_fused(n) if op == "_FusedConv2D" else []
            if op == "_FusedConv2D":
                conv_in.append(b.const(f"{n.name}/B", g.weights[ins[2]].astype(np.float32)))
            act = "Relu" if "Relu" in fused else "Relu6" if "Relu6" in fused else None
            y = b.add("Conv", conv_in, o if act is None else f"{n.name}/conv", name=n.name,
                      kernel_shape=list(wt.shape[2:]), strides=list(st), dilations=list(dl), group=group,
                      pads=_explicit_pads(n, _hw(in_shape), wt.shape[2:], st, dl))
            if act == "Relu":
                b.add("Relu", [y], o, name=f"{n.name}/relu")
            elif act == "Relu6":
                b.add("Clip", [y, b.const(f"{n.name}/lo", np.float32(0)), b.const(f"{n.name}/hi", np.float32(6))], o,
                      name=f"{n.name}/relu6")
        elif op == "Conv2DBackpropInput":
            w = g.weights[ins[1]].astype(np.float32)          # [kh, kw, out_ch, in_ch]
            sizes = [int(v) for v in g.weights[ins[0]]]
            st = _hw(n.ints("strides"))
            xs = shapes[ins[2]]
            kh, kw = w.shape[:2]
            full = ((xs[1] - 1) * st[0] + kh, (xs[2] - 1) * st[1] + kw)
            if n.s("padding") == "SAME":
                pt, pl = npops.same_pads(sizes[1], kh, st[0])[0], npops.same_pads(sizes[2], kw, st[1])[0]
            else:
                pt = pl = 0
            pads = [pt, pl, full[0] - sizes[1] - pt, full[1] - sizes[2] - pl]
            if min(pads) < 0:
                raise TfjsError(f"{n.name}: output size {sizes} needs output_padding, not supported")
            b.add("ConvTranspose", [nm(ins[2]), b.const(f"{n.name}/W", w.transpose(3, 2, 0, 1))], o, name=n.name,
                  kernel_shape=[kh, kw], strides=list(st), pads=pads)
        elif op in ("MaxPool", "AvgPool"):
            k, st = _hw(n.ints("ksize")), _hw(n.ints("strides"))
            pads = _explicit_pads(n, _hw(in_shape), k, st)
            if op == "MaxPool":
                b.add("MaxPool", [nm(ins[0])], o, kernel_shape=list(k), strides=list(st), pads=pads)
            else:  # TF never counts padded cells
                b.add("AveragePool", [nm(ins[0])], o, kernel_shape=list(k), strides=list(st), pads=pads,
                      count_include_pad=0)
        elif op in ("Add", "AddV2", "BiasAdd", "Sub", "Mul"):
            r = max(rank[i] for i in ins)
            onnx_op = {"Sub": "Sub", "Mul": "Mul"}.get(op, "Add")
            b.add(onnx_op, [b.operand(i, r) for i in ins], o)
        elif op == "AddN":
            acc = nm(ins[0])
            for k, i in enumerate(ins[1:]):
                acc = b.add("Add", [acc, nm(i)], o if k == len(ins) - 2 else f"{n.name}/sum{k}")
        elif op in ("Relu", "Sigmoid"):
            b.add(op, [nm(ins[0])], o)
        elif op == "Relu6":
            lo, hi = b.const(f"{n.name}/lo", np.float32(0)), b.const(f"{n.name}/hi", np.float32(6))
            b.add("Clip", [nm(ins[0]), lo, hi], o)
        elif op == "Mean":
            axes = [int(a) for a in np.atleast_1d(g.weights[ins[1]])]
            if rank[ins[0]] == 4:
                axes = [{0: 0, 1: 2, 2: 3, 3: 1, -1: 1}[a] for a in axes]
            b.add("ReduceMean", [nm(ins[0])], o, axes=axes, keepdims=int(n.b("keep_dims")))
        elif op == "Softmax":
            if rank[ins[0]] != 2:
                raise TfjsError(f"{n.name}: Softmax on rank {rank[ins[0]]} not supported")
            b.add("Softmax", [nm(ins[0])], o, axis=-1)
        elif op == "ResizeBilinear":
            size = [int(v) for v in g.weights[ins[1]]]
            ih, iw = _hw(shapes[ins[0]])
            mode = "align_corners" if n.b("align_corners") else "half_pixel" if n.b("half_pixel_centers") \
                else "asymmetric"
            scales = b.const(f"{n.name}/scales", np.array([1, 1, size[0] / ih, size[1] / iw], np.float32))
            b.add("Resize", [nm(ins[0]), "", scales], o, mode="linear", coordinate_transformation_mode=mode)
        else:
            raise TfjsError(f"op {op} (node {n.name}) is not supported by the converter")

    # Rename the requested outputs with Identity nodes (keeps internal names stable).
    outs = []
    for tf_name, onnx_name in outputs.items():
        b.add("Identity", [nm(tf_name)], onnx_name, name=f"output_{onnx_name}")
        s = shapes[tf_name]
        dims = ["N"] + (list(s[1:]) if len(s) != 4 else [s[3], s[1], s[2]])
        outs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT, dims))
    in_dims = ["N", ph_shape[3], ph_shape[1], ph_shape[2]]
    graph = helper.make_graph(b.nodes, graph_name,
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_dims)], outs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="zoom scripts/setup_models.py (tfjs converter)", ir_version=8)
    model.doc_string = doc
    return model
