"""ONNX -> IR. Imports onnx; loaded only when a model is compiled."""

from fhec.frontend.importer import ImportedModel, import_onnx, load_onnx

__all__ = ["ImportedModel", "import_onnx", "load_onnx"]
