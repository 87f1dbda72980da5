"""The reference backend: runs the IR with numpy through each op's `evaluate`."""

from fhec.backends.reference.interpreter import evaluate, evaluate_all

__all__ = ["evaluate", "evaluate_all"]
