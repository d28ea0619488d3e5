"""What a converter hands to the setup driver."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx


@dataclass
class Built:
    # The ONNX model: a ModelProto we built, or the original bytes of a model we keep unchanged.
    model: onnx.ModelProto | bytes
    # verify(session on the temp file) → parity metrics; raises onnxio.VerifyError on failure.
    verify: Callable[..., dict]
    # describe(session on the final file, metrics) → (card dict, golden arrays by file stem);
    # the card should carry a one-line verification.summary, printed by the driver.
    describe: Callable[..., tuple[dict, dict[str, np.ndarray]]]
    # README.md text for tests/golden/<name>/.
    golden_readme: str
