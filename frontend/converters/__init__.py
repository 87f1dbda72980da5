"""The converters, one small function per ONNX op; importing this fills the table."""

from fhec.frontend.converters import elementwise, linalg, ml, nn, shape  # noqa: F401
