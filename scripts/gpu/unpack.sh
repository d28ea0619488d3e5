#!/usr/bin/env bash
# Unpacks what scripts/gpu/stage.sh packed: `unpack.sh DIR DEST`. Works on a prefix of the chunks
# (the files wholly inside it are extracted) and without the xz tool (Python's lzma is used).
# Prints the environment check.sh needs.
set -uo pipefail
DIR=${1:?usage: unpack.sh DIR DEST}
DEST=${2:?usage: unpack.sh DIR DEST}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
cat "$DIR"/payload.tar.xz.* | python3 -c '
import lzma, sys, tarfile
dest = sys.argv[1]
stream = lzma.open(sys.stdin.buffer)
n = 0
try:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            tar.extract(member, dest, filter="data")
            n += 1
except (EOFError, lzma.LZMAError, tarfile.ReadError) as e:
    print(f"stream ends early after {n} files ({e}): later chunks have not arrived", file=sys.stderr)
print(f"{n} files unpacked into {dest}", file=sys.stderr)
' "$DEST"
chmod +x "$DEST"/bin/* 2>/dev/null
echo "export ZOOM_BIN=$DEST/bin/zoom ZOOM_GRAPH_TESTS=$DEST/bin/zoom-graph-tests ORT_DYLIB_PATH=$DEST/ort/libonnxruntime.so"
