#!/usr/bin/env bash
# Packs everything scripts/gpu/check.sh needs into DIR, for a GPU machine that can neither build
# Rust nor download (the device machine this project is sometimes lent). Run it here, copy DIR
# over, then there: `scripts/gpu/unpack.sh DIR DEST` and run check.sh with the paths it prints.
#
#   scripts/gpu/stage.sh DIR [--sm 90] [--chunk-mb 55]
#
# - zoom built with `--features cuda` (release) and zoom-graph's unit-test binary, stripped;
# - onnxruntime-gpu from PyPI (the same version as scripts/fetch-onnxruntime.sh), its CUDA
#   provider cut down to one GPU architecture with prune_fatbin.py (284 MB -> 52 MB compressed);
# - the demo models (they are ignored by git, so a plain copy of the tree lacks them).
# Everything is xz-compressed (Python's lzma can unpack it where xz is missing) and cut into
# numbered chunks of at most --chunk-mb, so it can travel in several size-limited transfers.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:?usage: stage.sh DIR [--sm N] [--chunk-mb MB]}
shift
SM=90
CHUNK_MB=55
while [[ $# -gt 0 ]]; do
    case $1 in
    --sm) SM=$2; shift 2 ;;
    --chunk-mb) CHUNK_MB=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
ORT_VERSION=$(sed -n 's/^ORT_VERSION="${ORT_VERSION:-\([0-9.]*\)}"/\1/p' scripts/fetch-onnxruntime.sh)
[[ -n "$ORT_VERSION" ]] || { echo "cannot read ORT_VERSION from scripts/fetch-onnxruntime.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload/ort" "$work/payload/bin" "$DIR"

echo "building zoom (release, cuda) and zoom-graph's tests"
cargo build --release --features cuda --bin zoom
tests=$(cargo test -p zoom-graph --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "zoom_graph":
        print(m["executable"])' | tail -1)
strip -o "$work/payload/bin/zoom" target/release/zoom
strip -o "$work/payload/bin/zoom-graph-tests" "$tests"

echo "onnxruntime-gpu $ORT_VERSION"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    "onnxruntime-gpu==$ORT_VERSION" -d "$work/wheel"
(cd "$work/wheel" && python3 -m zipfile -e ./*.whl x)
capi="$work/wheel/x/onnxruntime/capi"
cp "$capi/libonnxruntime.so.$ORT_VERSION" "$work/payload/ort/"
ln -s "libonnxruntime.so.$ORT_VERSION" "$work/payload/ort/libonnxruntime.so"  # zoom reads the version off it
cp "$capi/libonnxruntime_providers_shared.so" "$work/payload/ort/"
python3 scripts/gpu/prune_fatbin.py "$capi/libonnxruntime_providers_cuda.so" \
    "$work/payload/ort/libonnxruntime_providers_cuda.so" --keep-sm "$SM"

echo "demo models"
(git ls-files --others --ignored --exclude-standard onnx; git ls-files onnx) |
    sort -u | while read -r f; do
    mkdir -p "$work/payload/$(dirname "$f")"
    cp "$f" "$work/payload/$f"
done

echo "compressing"
# Largest model last: a prefix of the chunks already unpacks the libraries, the binaries and the
# small models (unpack.sh extracts what a truncated stream holds), so checks that need no CLIP
# text tower can start before the last chunk arrives.
(cd "$work/payload" && find ort bin onnx -type f -o -type l |
    python3 -c 'import os,sys
files = [l.strip() for l in sys.stdin]
files.sort(key=lambda f: (f.startswith("onnx"), os.path.getsize(f)))
print("\n".join(files))' >"$work/order")
tar -C "$work/payload" -cf - -T "$work/order" | xz -6 -T0 >"$work/payload.tar.xz"
rm -f "$DIR"/payload.tar.xz.*
split -b "${CHUNK_MB}M" -d -a 2 "$work/payload.tar.xz" "$DIR/payload.tar.xz."
ls -l "$DIR"
