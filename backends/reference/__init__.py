"""The reference backend: runs the IR with numpy through each op's `evaluate`
(the interpreter lives in fhec.ir.interpreter, shared with the passes)."""

from fhec.ir.interpreter import evaluate, evaluate_all

__all__ = ["evaluate", "evaluate_all"]
