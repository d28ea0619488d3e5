#!/usr/bin/env python3
"""Zero the GPU code in a CUDA shared library that a given GPU architecture will never load.

Why: the device machine this project is sometimes lent (scripts/gpu/README.md) receives files in
64 MiB calls, and ONNX Runtime's CUDA provider is 284 MB because it carries cubins for six
architectures. Zeroing the payload of every fatbin entry for another architecture leaves a file of
the same layout (offsets, sizes and ELF sections untouched) that the CUDA driver loads exactly as
before on the kept architecture, and that compresses to a fraction of its size.

Usage: prune_fatbin.py IN.so OUT.so --keep-sm 90
The fatbin container format is undocumented; the fields read here are the ones that
`cuobjdump --list-elf` reports (magic 0xBA55ED50, per-entry kind, header size, payload size, sm).
An entry that does not parse stops the script with an error rather than guessing.
"""
import argparse
import struct
import sys

FATBIN_MAGIC = 0xBA55ED50


def sections(data):
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for i in range(shnum):
        name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        raw.append((name, off, size))
    strtab = raw[shstrndx][1]
    for name, off, size in raw:
        end = data.index(b"\0", strtab + name)
        yield data[strtab + name:end].decode(), off, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--keep-sm", type=int, required=True)
    a = ap.parse_args()
    data = bytearray(open(a.src, "rb").read())
    if data[:4] != b"\x7fELF":
        sys.exit(f"{a.src}: not an ELF file")
    fat = [(off, size) for name, off, size in sections(data) if name == ".nv_fatbin"]
    if not fat:
        sys.exit(f"{a.src}: no .nv_fatbin section")
    off, size = fat[0]
    kept = zeroed = 0
    p, end_all = off, off + size
    while p < end_all:
        magic, _ver, hsz, fsz = struct.unpack_from("<IHHQ", data, p)
        if magic != FATBIN_MAGIC:
            p += 8  # containers are 8-byte aligned; padding between them
            continue
        q, end = p + hsz, p + hsz + fsz
        while q < end:
            _kind, _unk, ehs, esz = struct.unpack_from("<HHIQ", data, q)
            sm = struct.unpack_from("<I", data, q + 28)[0]
            if ehs < 32 or q + ehs + esz > end:
                sys.exit(f"{a.src}: fatbin entry at {q:#x} does not parse; refusing to guess")
            if sm == a.keep_sm:
                kept += esz
            else:
                data[q + ehs:q + ehs + esz] = bytes(esz)
                zeroed += esz
            q += ehs + esz
        p = end
    if kept == 0:
        sys.exit(f"{a.src}: no code for sm_{a.keep_sm}; nothing would run")
    open(a.dst, "wb").write(data)
    print(f"kept {kept / 1e6:.1f} MB for sm_{a.keep_sm}, zeroed {zeroed / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
