"""The contract module (z, edit → image, style), its ONNX export and the opset conversion."""
from __future__ import annotations

import collections
import contextlib
import io
import os
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch

from .interface import StyleLayer


class ContractModule(torch.nn.Module):
    """zoom's generator contract around any generator offering the interface of ``interface.py``."""

    def __init__(self, gen, layers: list[StyleLayer], truncation_psi: float, truncation_cutoff: int | None,
                 clamp: bool = False):
        super().__init__()
        self.gen = gen
        self.layers = layers
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        self.clamp = clamp
        self.spans = []
        a = 0
        for layer in layers:
            self.spans.append((a, a + layer.channels))
            a += layer.channels
        self.style_dim = a
        self.z_dim = int(gen.z_dim)

    def unedited_styles(self, z):
        ws = self.gen.mapping(z, self.truncation_psi, self.truncation_cutoff)
        return ws, self.gen.styles(ws)

    def forward(self, z, edit):
        ws, styles = self.unedited_styles(z)
        if len(styles) != len(self.spans):
            raise RuntimeError(f"styles() returned {len(styles)} tensors for {len(self.spans)} style_layers")
        edited = [s + edit[:, a:b] for s, (a, b) in zip(styles, self.spans)]
        image = self.gen.synthesis(ws, edited)
        if self.clamp:
            image = image.clamp(-1.0, 1.0)
        return image, torch.cat(styles, dim=1)


# --------------------------------------------------------------------------------------------------
# Export


EXPORTER_OPSET = 18  # torch.onnx's dynamo exporter translates at its native opset 18


def export(module: ContractModule, out_path: Path, opset: int, log, external_data: bool = False) -> dict:
    """Exports with torch.onnx (dynamo), converts the opset, checks and saves. Returns facts for the card."""
    z = torch.randn(2, module.z_dim, generator=torch.Generator().manual_seed(0))
    e = torch.zeros(2, module.style_dim)
    batch = torch.export.Dim("N", min=1, max=1 << 16)
    t0 = time.time()
    chatter = io.StringIO()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (z, e), None, input_names=["z", "edit"], output_names=["image", "style"],
            opset_version=EXPORTER_OPSET, dynamo=True, dynamic_shapes={"z": {0: batch}, "edit": {0: batch}},
            optimize=True, external_data=False, verbose=False)
    model = program.model_proto
    t_export = time.time() - t0
    log(f"torch.onnx.export (dynamo) in {t_export:.1f} s, {len(model.graph.node)} nodes")
    model = inline_local_functions(model)
    notes = convert_opset(model, opset) if opset != EXPORTER_OPSET else []
    if opset > EXPORTER_OPSET:
        model = onnx.version_converter.convert_version(model, opset)
    for n in notes:
        log(f"opset {opset}: {n}")
    name_batch_dim(model)
    model.producer_name = "zoom scripts/export_stylegan.py (torch.onnx dynamo)"
    model.producer_version = torch.__version__
    size = model.ByteSize()
    external = external_data or size > 1_900_000_000  # protobuf's 2 GiB limit, with a margin
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    data_path = out_path.with_name(out_path.name + ".data")
    if data_path.exists():
        data_path.unlink()  # onnx appends to an existing external-data file
    if external:
        data_name = data_path.name
        onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        os.chmod(data_path, 0o644)
    else:
        onnx.save_model(model, tmp)
    onnx.checker.check_model(str(tmp), full_check=True)
    os.replace(tmp, out_path)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    domains = sorted({n.domain or "ai.onnx" for n in model.graph.node})
    return {"seconds": round(t_export, 1), "external_data": external, "ops": dict(sorted(ops.items())),
            "nodes": len(model.graph.node), "domains": domains, "opset_notes": notes,
            "params": int(sum(np.prod(t.dims) for t in model.graph.initializer))}


def inline_local_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    if len(model.functions) == 0:
        return model
    import onnx.inliner
    return onnx.inliner.inline_local_functions(model)


def name_batch_dim(model: onnx.ModelProto) -> None:
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"


# --------------------------------------------------------------------------------------------------
# Opset 18 → 17 (onnx.version_converter has no 18→17 adapter for Pad; the few operators whose schema
# changed at 18 are rewritten here, anything else is an error naming the operator)


_REDUCE_AXES_INPUT_18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}


def _constant_values(model: onnx.ModelProto) -> dict:
    vals = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = a.t
    return vals


def convert_opset(model: onnx.ModelProto, target: int) -> list[str]:
    """Rewrites an opset-18 graph for ``target`` (17..18) in place; returns notes."""
    import onnx.defs
    src = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if target > EXPORTER_OPSET:
        return []
    if target < 17:
        raise ValueError("--opset must be at least 17")
    if src is None or src <= target:
        return []
    consts = _constant_values(model)
    notes = collections.Counter()
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        try:
            old = onnx.defs.get_schema(n.op_type, target, "").since_version
        except onnx.defs.SchemaError:
            raise ValueError(f"operator {n.op_type} (node {n.name!r}) does not exist at opset {target}; "
                             f"export with --opset {src}")
        new = onnx.defs.get_schema(n.op_type, src, "").since_version
        if old == new:
            continue
        if n.op_type in _REDUCE_AXES_INPUT_18:
            attrs = {a.name: a for a in n.attribute}
            if len(n.input) > 1 and n.input[1]:
                if n.input[1] not in consts:
                    raise ValueError(f"{n.op_type} node {n.name!r}: axes are not a constant, cannot express them at opset {target}")
                axes = onnx.numpy_helper.to_array(consts[n.input[1]]).astype(np.int64).ravel().tolist()
                del n.input[1:]
                n.attribute.append(onnx.helper.make_attribute("axes", axes))
            elif attrs.get("noop_with_empty_axes") is not None and attrs["noop_with_empty_axes"].i == 1:
                raise ValueError(f"{n.op_type} node {n.name!r}: noop_with_empty_axes=1 has no opset-{target} form")
            keep = [a for a in n.attribute if a.name != "noop_with_empty_axes"]
            del n.attribute[:]
            n.attribute.extend(keep)
            notes[f"{n.op_type}: axes input -> attribute"] += 1
        elif n.op_type == "Pad":
            if len(n.input) > 3 and n.input[3]:
                raise ValueError(f"Pad node {n.name!r} uses the opset-18 'axes' input")
            notes["Pad: unchanged (no axes input)"] += 1
        elif n.op_type == "Resize":
            for a in list(n.attribute):
                if a.name == "antialias" and a.i != 0 or a.name == "keep_aspect_ratio_policy" and a.s != b"stretch":
                    raise ValueError(f"Resize node {n.name!r}: {a.name} has no opset-{target} form")
            keep = [a for a in n.attribute if a.name not in ("antialias", "keep_aspect_ratio_policy")]
            del n.attribute[:]
            n.attribute.extend(keep)
            notes["Resize: default opset-18 attributes dropped"] += 1
        elif n.op_type == "Split":
            if any(a.name == "num_outputs" for a in n.attribute):
                raise ValueError(f"Split node {n.name!r} uses the opset-18 num_outputs attribute")
            notes["Split: unchanged"] += 1
        elif n.op_type in ("ScatterElements", "ScatterND"):
            if any(a.name == "reduction" and a.s in (b"max", b"min") for a in n.attribute):
                raise ValueError(f"{n.op_type} node {n.name!r}: reduction max/min needs opset 18")
            notes[f"{n.op_type}: unchanged"] += 1
        else:
            raise ValueError(f"operator {n.op_type} (node {n.name!r}) changed at opset {new}; no conversion to "
                             f"opset {target} is implemented: export with --opset {new}")
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    return [f"{k} ({v} nodes)" for k, v in sorted(notes.items())]
