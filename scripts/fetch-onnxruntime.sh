#!/usr/bin/env bash
# Fetch the ONNX Runtime C library (libonnxruntime.so) out of the PyPI `onnxruntime` wheel into .ort/lib.
# Why a wheel: ort's own download feature needs a CDN that is unreachable here; PyPI is reachable.
# Idempotent: a second run only re-checks the sha256. Needs python3 + pip only.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.31.1}"
# sha256 of libonnxruntime.so.1.31.1 as shipped in the manylinux_2_28_x86_64 wheels (cp311/312/313 identical).
ORT_SHA256="${ORT_SHA256-fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ORT_DIR:-$ROOT/.ort}/lib"
LIB="$DEST/libonnxruntime.so.$ORT_VERSION"

verify() { [[ -z "$ORT_SHA256" ]] || echo "$ORT_SHA256  $1" | sha256sum -c --quiet - >/dev/null 2>&1; }

if [[ -f "$LIB" ]] && verify "$LIB"; then
  echo "onnxruntime $ORT_VERSION already in $DEST"
else
  TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
  echo "fetching onnxruntime==$ORT_VERSION wheel from PyPI ..."
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.11 --platform manylinux_2_28_x86_64 \
    "onnxruntime==$ORT_VERSION" -d "$TMP"
  mkdir -p "$DEST"
  # Extract next to the destination, check, then rename: a failed or corrupted fetch leaves nothing behind.
  python3 - "$TMP" "$DEST" "$ORT_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest, ver = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one onnxruntime wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z:
    for name in (f"onnxruntime/capi/libonnxruntime.so.{ver}", "onnxruntime/capi/libonnxruntime_providers_shared.so"):
        out = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(out + ".part", 0o755)
PY
  if ! verify "$DEST/libonnxruntime.so.$ORT_VERSION.part"; then
    actual=$(sha256sum "$DEST/libonnxruntime.so.$ORT_VERSION.part" | cut -d' ' -f1)
    rm -f "$DEST"/*.part
    echo "error: libonnxruntime.so.$ORT_VERSION from the onnxruntime==$ORT_VERSION wheel has sha256 $actual, expected $ORT_SHA256" >&2
    exit 1
  fi
  mv -f "$DEST/libonnxruntime.so.$ORT_VERSION.part" "$LIB"
  mv -f "$DEST/libonnxruntime_providers_shared.so.part" "$DEST/libonnxruntime_providers_shared.so"
fi
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/libonnxruntime.so.1"
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$DEST/libonnxruntime.so"
echo "onnxruntime $ORT_VERSION -> $DEST"
