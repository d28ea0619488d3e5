"""Writing ONNX models safely: temp file in the target folder, checker, parity run, os.replace.

A model only appears at its final path after onnx.checker and a caller-supplied onnxruntime
parity check both passed, so an interrupted or failed conversion never leaves a half-written
or unverified `model.onnx` behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort


class VerifyError(RuntimeError):
    """A converted model failed its checker or parity run."""


def session(path_or_bytes, threads: int = 1) -> ort.InferenceSession:
    """CPU session with few threads (the workplace shares 2 cores)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def write_verified(model: onnx.ModelProto | bytes, dest: Path,
                   verify: Callable[[ort.InferenceSession], dict]) -> dict:
    """Save `model` to `dest` only if checker and `verify(session)` pass; return verify's metrics."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".onnx")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        if isinstance(model, bytes):
            tmp_path.write_bytes(model)  # an original graph kept byte for byte
        else:
            onnx.save(model, tmp_path)
        try:
            onnx.checker.check_model(str(tmp_path), full_check=True)
        except onnx.checker.ValidationError as e:
            raise VerifyError(f"{dest}: onnx.checker rejected the converted model: {e}") from e
        metrics = verify(session(tmp_path))
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp_path, dest)
        return metrics
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic_bytes(data: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def max_abs_diff(a: np.ndarray, b: np.ndarray, what: str) -> float:
    if a.shape != b.shape:
        raise VerifyError(f"{what}: shape {a.shape} vs reference {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def require_close(diff: float, tol: float, what: str) -> float:
    if not np.isfinite(diff) or diff > tol:
        raise VerifyError(f"{what}: max abs diff {diff:.3g} vs the reference exceeds tolerance {tol:g}")
    return diff
