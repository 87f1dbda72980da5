"""All op definitions; importing this package fills the op registry."""

from fhec.ir.ops import ckks, core, elementwise, grad, linalg, nn, poly, shape, tfhe  # noqa: F401
