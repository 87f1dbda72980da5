"""All op definitions; importing this package fills the op registry."""

from fhec.ir.ops import ckks, core, elementwise, linalg, nn, poly, shape, tfhe  # noqa: F401
