"""What one golden case is: a model, the samples it runs on, and what it is for."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """One model of the golden suite.

    `inputs` are the held-out samples the expected outputs are computed on;
    `calibration` are other samples (training data where there is any) that fix
    the value ranges the compiler annotates. `labels`, for a classifier, are the
    true classes of `inputs`.
    """

    name: str
    description: str
    model: onnx.ModelProto
    inputs: Arrays
    calibration: Arrays
    labels: np.ndarray | None = None
    # Anything worth saying in the README (e.g. the accuracy on the training split).
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def is_classifier(self) -> bool:
        return self.labels is not None
