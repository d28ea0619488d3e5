"""Generated training/evaluation faces: the DCGAN generator with and without edit-space offsets.

The tower must read edited images too (zoom computes CLIP on counterfactuals and on ±kσ channel
probes), so a share of the samples carries edits of the two kinds zoom makes:
  - probe:  1-4 channels pushed by ±(3..6)·channel_scale (like the ±kσ probes of the global directions);
  - attack: α·d with d a unit-L2 direction over 5-50 channels (weighted by channel_scale) and
            |α| ≤ the card's default attack bound (like zoom's counterfactual attacks).
Labels are computed on the edited images themselves, so an edit that changes the smile changes the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EDIT_MIX = {"none": 0.4, "probe": 0.3, "attack": 0.3}


@dataclass
class Generator:
    sess: object
    z_dim: int
    edit_dim: int
    channel_scale: np.ndarray  # [S] per-channel scale of the edit space (σ of `style`)
    editable: np.ndarray  # indices of editable channels
    attack_bound: float
    truncation: float | None

    @classmethod
    def load(cls, model: Path, contract: dict, threads: int = 2) -> "Generator":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        return cls(sess=sess, **contract)

    def sample(self, n: int, rng: np.random.Generator, batch: int = 256):
        """n images [n,3,64,64] float32 in [-1,1], the edit kind of each, and the edits themselves."""
        z = rng.standard_normal((n, self.z_dim)).astype(np.float32)
        if self.truncation is not None:
            z *= self.truncation
        kinds = rng.choice(list(EDIT_MIX), size=n, p=list(EDIT_MIX.values()))
        edits = np.zeros((n, self.edit_dim), np.float32)
        for i, kind in enumerate(kinds):
            if kind == "probe":
                ch = rng.choice(self.editable, size=rng.integers(1, 5), replace=False)
                edits[i, ch] = rng.choice([-1.0, 1.0], size=len(ch)) * rng.uniform(3, 6, len(ch)) * self.channel_scale[ch]
            elif kind == "attack":
                ch = rng.choice(self.editable, size=rng.integers(5, 51), replace=False)
                d = rng.standard_normal(len(ch)) * self.channel_scale[ch]
                edits[i, ch] = d / np.linalg.norm(d) * rng.uniform(-self.attack_bound, self.attack_bound)
        images = np.empty((n, 3, 64, 64), np.float32)
        for i in range(0, n, batch):
            images[i:i + batch] = self.sess.run(["image"], {"z": z[i:i + batch], "edit": edits[i:i + batch]})[0]
        return images, kinds, edits
