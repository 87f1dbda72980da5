"""All op definitions; importing this package fills the op registry."""

from fhec.ir.ops import core, elementwise, linalg, nn, shape  # noqa: F401
