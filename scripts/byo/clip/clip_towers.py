"""Loading OpenAI CLIP / OpenCLIP models and exporting their two towers to zoom's CLIP contract.

    image.onnx  image      [N, 3, S, S] float32, already normalised  ->  embedding [N, D] float32
    text.onnx   input_ids  [N, 77] int64 (0-padded)                  ->  embedding [N, D] float32
    (both embeddings L2-normalised in the graph; zoom renormalises anyway)

Export: torch.onnx.export(dynamo=True) at opset 18 (the exporter's lowest), then relabelled to the
requested opset after checking that every operator in the graph has the same definition at both
opsets (default 17; the ops CLIP uses did not change between 17 and 18 except the Reduce* family,
which the towers avoid: the L2 normalisation is written as x * rsqrt(sum(x*x)), a ReduceSum, whose
axes-as-input form exists since opset 13).
"""

from __future__ import annotations

import difflib
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from models.fetch import sha256_file  # scripts/ is on sys.path (export_clip.py)

MIN_OPSET = 17   # LayerNormalization is a standard op from 17; below it the exporter decomposes it
MAX_OPSET = 21   # zoom-graph's autodiff is tested on opsets 13-21
EXPORT_OPSET = 18  # the dynamo exporter's lowest native opset
EXTERNAL_DATA_BYTES = 1_800_000_000  # towers whose weights exceed this go to <file>.data (protobuf: 2 GiB)


class ExportError(RuntimeError):
    """A user-facing error: the message says what is wrong and what to do."""


@dataclass
class LoadedModel:
    model: object                # open_clip CLIP (eval, float32, cpu)
    name: str                    # open_clip model name
    source: dict                 # for the card
    preprocess: dict             # open_clip's preprocess cfg (size, mean, std, ...)
    quick_gelu: bool
    notes: list = field(default_factory=list)




def resolve_name(name: str) -> str:
    import open_clip
    cleaned = name.replace("/", "-")
    known = open_clip.list_models()
    if cleaned in known:
        return cleaned
    close = difflib.get_close_matches(cleaned, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ExportError(
        f"unknown model name {name!r}: not one of open_clip's built-in architectures.{hint} "
        "List them with: .venv-byo/bin/python -c 'import open_clip; print(open_clip.list_models())'")


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _short(e: Exception, lines: int = 3) -> str:
    """The first lines of a (long, multi-line) torch error."""
    parts = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    more = f" (... {len(parts) - lines} more lines)" if len(parts) > lines else ""
    return " | ".join(p[:300] for p in parts[:lines]) + more


def _precheck_config(name: str) -> None:
    """Refuse architectures outside the contract before building them."""
    import open_clip
    cfg = open_clip.get_model_config(name) or {}
    text = cfg.get("text_cfg", {})
    why = None
    if "multimodal_cfg" in cfg:
        why = "a CoCa model (captioning decoder)"
    elif "hf_model_name" in text or "hf_tokenizer_name" in text:
        why = f"its text side is a Hugging Face model or tokenizer ({text.get('hf_model_name') or text.get('hf_tokenizer_name')}), not CLIP's BPE"
    elif cfg.get("custom_text"):
        why = "its text tower is not CLIP's (custom_text: own tokenizer, pooling or layout)"
    elif text.get("vocab_size", 49408) != 49408 or text.get("context_length", 77) != 77:
        why = f"vocabulary {text.get('vocab_size')} / context {text.get('context_length')}, CLIP's BPE has 49408 / 77"
    if why:
        raise ExportError(f"{name} is not supported: {why}. zoom's CLIP contract here needs CLIP's BPE "
                          "tokenizer and EOT pooling: use an OpenAI-style architecture (ViT-*, RN*, -quickgelu)")


def _check_supported(model, name: str) -> None:
    """zoom's text contract needs CLIP's BPE tokenizer and EOT (argmax) pooling over 0-padded ids."""
    import open_clip
    from open_clip.model import CLIP
    if not isinstance(model, CLIP):
        raise ExportError(
            f"{name}: {type(model).__name__} is not supported (not CLIP's text tower); use an OpenAI-style "
            "CLIP architecture (ViT-*, RN*, with or without -quickgelu)")
    tok = open_clip.get_tokenizer(name)
    if type(tok).__name__ != "SimpleTokenizer" or getattr(tok, "clean_fn", None).__name__ != "_clean_lower":
        raise ExportError(f"{name}: tokenizer {type(tok).__name__} is not CLIP's BPE (lower-case); not supported")
    if getattr(model, "text_pool_type", "argmax") != "argmax":
        raise ExportError(f"{name}: text pooling {model.text_pool_type!r} is not CLIP's EOT (argmax) pooling")
    if getattr(model, "vocab_size", 49408) != 49408:
        raise ExportError(f"{name}: vocabulary of {model.vocab_size}, CLIP's BPE has 49408")


def load_model(name: str, pretrained: str | None, random_weights: bool, seed: int,
               quick_gelu: bool) -> LoadedModel:
    import open_clip
    import torch

    name = resolve_name(name)
    _precheck_config(name)
    notes = []
    if random_weights == (pretrained is not None):
        raise ExportError("give exactly one of --pretrained PATH or --random-weights")
    if random_weights:
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu,
                                       pretrained_image=False, pretrained_text=False)
        source = {"weights": f"RANDOM WEIGHTS (test only, torch.manual_seed({seed})): "
                             "NOT a trained CLIP; its directions and logits are meaningless",
                  "format": "open_clip.create_model(pretrained=None)"}
    else:
        path = Path(pretrained).expanduser()
        if not path.exists():
            raise ExportError(f"--pretrained {pretrained}: no such file")
        if not path.is_file():
            raise ExportError(f"--pretrained {pretrained}: not a file (give the checkpoint file itself)")
        digest = sha256_file(path)
        if _is_torchscript_archive(path):
            # OpenAI's released ViT-B-32.pt etc.: a TorchScript archive. open_clip.create_model()
            # refuses it (torch.load(weights_only=True) cannot read TorchScript), so read its state
            # dict here and load it strictly into the named architecture with QuickGELU, as
            # open_clip.load_openai_model does (OpenAI's models were trained with QuickGELU).
            try:
                jit = torch.jit.load(str(path), map_location="cpu")
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"{path}: looks like a TorchScript archive but torch.jit.load failed: {e}") from e
            sd = {k: v.float() if v.is_floating_point() else v for k, v in jit.state_dict().items()}
            # OpenAI's archives carry these three as tensors; a re-traced open_clip model carries its
            # (non-persistent) causal mask: none of them are weights.
            for k in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
                sd.pop(k, None)
            model = open_clip.create_model(name, pretrained=None, force_quick_gelu=True,
                                           pretrained_image=False, pretrained_text=False)
            try:
                model.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                raise ExportError(f"{path} does not match architecture {name}: {_short(e)}") from e
            quick_gelu = True
            fmt = "OpenAI TorchScript archive (state dict loaded strictly into open_clip's architecture, QuickGELU)"
        else:
            try:
                model = open_clip.create_model(name, pretrained=str(path), force_quick_gelu=quick_gelu,
                                               pretrained_image=False, pretrained_text=False)
            except RuntimeError as e:
                raise ExportError(f"cannot load {path} as an OpenCLIP checkpoint of {name}: {_short(e)}") from e
            except Exception as e:  # noqa: BLE001  (unpickling errors, bad zip, ...)
                raise ExportError(f"cannot read {path} as a checkpoint (OpenCLIP state dict or OpenAI TorchScript): "
                                  f"{type(e).__name__}: {_short(e)}") from e
            fmt = "OpenCLIP checkpoint (open_clip.create_model(pretrained=PATH), strict)"
            if not quick_gelu and not name.endswith("-quickgelu"):
                notes.append("GELU activations: if these weights are OpenAI's (or another QuickGELU-trained "
                             "checkpoint) re-export with --model NAME-quickgelu or --quick-gelu")
        source = {"checkpoint": str(path), "sha256": digest, "bytes": path.stat().st_size, "format": fmt}
    model = model.float().eval()
    if quick_gelu or name.endswith("-quickgelu"):
        quick_gelu = True
    _check_supported(model, name)
    pre = dict(open_clip.get_model_preprocess_cfg(model))
    size = pre["size"]
    size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size)
    if len(size) != 2 or size[0] != size[1]:
        raise ExportError(f"{name}: input size {size} is not square; not supported")
    pre["size"] = size
    return LoadedModel(model=model, name=name, source=source, preprocess=pre, quick_gelu=quick_gelu, notes=notes)


def _towers(model):
    import torch

    def l2(e):
        # x * rsqrt(sum x^2): ReduceSum (axes as an input since opset 13) instead of ReduceL2, whose
        # signature changed at opset 18.
        return e * torch.rsqrt((e * e).sum(-1, keepdim=True).clamp_min(1e-24))

    class ImageTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, image):
            return l2(self.clip.encode_image(image))

    class TextTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, input_ids):
            return l2(self.clip.encode_text(input_ids))

    return ImageTower(model).eval(), TextTower(model).eval()


def reference_towers(model):
    """The torch modules that were exported (for parity checks)."""
    return _towers(model)


def _same_definitions(ir_model, src: int, dst: int) -> list[str]:
    """Ops whose standard definition differs between opsets src and dst (empty: relabelling is exact).
    Reduce* and Split are compared after _downgrade_18_to_17 rewrote them into their opset-13 form."""
    import onnx.defs
    bad = set()
    for node in ir_model.graph.all_nodes() if hasattr(ir_model.graph, "all_nodes") else ir_model.graph:
        if node.domain not in ("", "ai.onnx"):
            bad.add(f"{node.domain}::{node.op_type} (non-standard domain)")
            continue
        try:
            a = onnx.defs.get_schema(node.op_type, src, "").since_version
            b = onnx.defs.get_schema(node.op_type, dst, "").since_version
        except Exception:  # noqa: BLE001
            bad.add(node.op_type)
            continue
        rewritten = (src, dst) == (18, 17) and (node.op_type in _REDUCE_AXES_INPUT or node.op_type == "Split")
        if a != b and not rewritten:
            bad.add(f"{node.op_type} (v{a} at opset {src}, v{b} at opset {dst})")
        for attr in node.attributes.values():
            if getattr(attr, "type", None) is not None and "GRAPH" in str(attr.type):
                bad.add(f"{node.op_type} (subgraph)")
    return sorted(bad)


# Reduce ops whose axes moved from an attribute (opset 13) to an input (opset 18).
_REDUCE_AXES_INPUT = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                      "ReduceMin", "ReduceProd", "ReduceSumSquare"}


def _const_ints(value) -> list[int] | None:
    """The int64 values of a constant (initializer or Constant node output), else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return [int(v) for v in value.const_value.numpy().reshape(-1)]
    prod = value.producer()
    if prod is not None and prod.op_type == "Constant" and "value" in prod.attributes:
        return [int(v) for v in prod.attributes["value"].value.numpy().reshape(-1)]
    return None


def _downgrade_18_to_17(ir_model) -> list[str]:
    """Rewrites the two opset-18 changes a CLIP graph can contain into their opset-13..17 form:
    Reduce*(x, axes) -> Reduce*(x) with an `axes` attribute; Split(num_outputs=k) -> Split(x, split)
    with explicit sizes. Returns what could not be rewritten."""
    import onnx_ir as ir
    import numpy as np
    problems = []
    for node in list(ir_model.graph):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _REDUCE_AXES_INPUT:
            noop = node.attributes.get("noop_with_empty_axes")
            axes = _const_ints(node.inputs[1]) if len(node.inputs) > 1 else []
            if axes is None:
                problems.append(f"{node.name} ({node.op_type}): axes are not constant")
                continue
            if noop is not None and noop.value and not axes:
                problems.append(f"{node.name} ({node.op_type}): noop_with_empty_axes=1 with no axes")
                continue
            node.attributes.pop("noop_with_empty_axes", None)
            if len(node.inputs) > 1:
                old_axes = node.inputs[1]
                node.resize_inputs(1)
                if old_axes is not None and old_axes.is_initializer() and not old_axes.uses():
                    ir_model.graph.initializers.pop(old_axes.name, None)
            if axes:
                node.attributes["axes"] = ir.AttrInt64s("axes", axes)
        elif node.op_type == "Split":
            k = node.attributes.get("num_outputs")
            if k is None:
                continue
            node.attributes.pop("num_outputs")
            if len(node.inputs) > 1 and node.inputs[1] is not None:
                continue
            axis = node.attributes["axis"].value if "axis" in node.attributes else 0
            shape = node.inputs[0].shape
            try:
                dim = int(shape[axis])
            except (TypeError, ValueError, IndexError):
                problems.append(f"{node.name} (Split num_outputs): the split axis has no static size")
                continue
            n = int(k.value)
            chunk = -(-dim // n)
            sizes = [chunk] * (dim // chunk) + ([dim % chunk] if dim % chunk else [])
            if len(sizes) != n:
                problems.append(f"{node.name} (Split): {dim} into {n} is not expressible")
                continue
            split = ir.Value(name=f"{node.name}_split_sizes", const_value=ir.tensor(np.asarray(sizes, np.int64)))
            ir_model.graph.register_initializer(split)
            node.resize_inputs(2)
            node.replace_input_with(1, split)
    return problems


def _fix_names(ir_model, output_name: str) -> None:
    """The exporter names aten.embedding's result 'embedding' too: rename internal clashes."""
    graph = ir_model.graph
    outs = list(graph.outputs)
    if len(outs) != 1:
        raise ExportError(f"expected one graph output, got {len(outs)}")
    taken = {v.name for v in graph.inputs} | set(graph.initializers)
    for node in graph:
        for v in node.outputs:
            if v is outs[0]:
                continue
            if v.name == output_name:
                v.name = f"{output_name}__internal"
            taken.add(v.name)
    outs[0].name = output_name


def export_tower(module, example, input_name: str, path: Path, opset: int, metadata: dict,
                 doc: str) -> dict:
    """Exports one tower; returns facts for the card (opset, ops histogram, bytes, external data)."""
    import torch

    if not (MIN_OPSET <= opset <= MAX_OPSET):
        raise ExportError(f"--opset {opset}: choose {MIN_OPSET}..{MAX_OPSET} (LayerNormalization needs 17; "
                          f"zoom's autodiff is tested up to {MAX_OPSET})")
    export_opset = max(opset, EXPORT_OPSET)
    batch = torch.export.Dim("N", min=1, max=65536)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    prog = torch.onnx.export(
        module, (example,), None, input_names=[input_name], output_names=["embedding"],
        opset_version=export_opset, dynamo=True, external_data=False,
        dynamic_shapes={input_name: {0: batch}}, optimize=True, verbose=False)
    ir_model = prog.model
    _fix_names(ir_model, "embedding")
    if export_opset != opset:
        if export_opset == 18 and opset == 17:
            problems = _downgrade_18_to_17(ir_model)
            if problems:
                raise ExportError(f"cannot rewrite opset 18 -> 17: {'; '.join(problems)}; use --opset 18")
        bad = _same_definitions(ir_model, export_opset, opset)
        if bad:
            raise ExportError(f"cannot relabel opset {export_opset} -> {opset}: these ops differ: {', '.join(bad)}; "
                              f"use --opset {export_opset}")
        ir_model.opset_imports[""] = opset
    hist: dict[str, int] = {}
    for node in ir_model.graph:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        hist[key] = hist.get(key, 0) + 1
    n_bytes = sum(int(v.const_value.nbytes) for v in ir_model.graph.initializers.values()
                  if v.const_value is not None)
    external = n_bytes > EXTERNAL_DATA_BYTES
    ir_model.producer_name = "zoom scripts/export_clip.py (torch.onnx dynamo)"
    ir_model.doc_string = doc
    for k, v in metadata.items():
        ir_model.metadata_props[k] = str(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    for p in (path, data):
        if p.exists():
            p.unlink()
    prog.save(str(path), external_data=external)
    return {"opset": opset, "exported_at_opset": export_opset, "ops": dict(sorted(hist.items(), key=lambda kv: -kv[1])),
            "initializer_bytes": n_bytes, "external_data": external}
