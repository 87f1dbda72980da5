"""Analyses and rewrites, one pass per file; importing this package registers them all."""

from fhec.passes import (  # noqa: F401
    annotate_ranges,
    annotate_secrecy,
    canonicalize,
    eliminate_dead_code,
    fold_batchnorm,
    fold_constants,
    infer_shapes,
)
from fhec.passes import quantize_tfhe  # noqa: F401
from fhec.passes import lower_to_integer  # noqa: F401
from fhec.passes import round_accumulators  # noqa: F401
from fhec.passes import annotate_bit_widths  # noqa: F401
from fhec.passes import approximate_activations  # noqa: F401
from fhec.passes import split_epilogue_ckks  # noqa: F401
from fhec.passes import expand_polynomials_ckks  # noqa: F401
from fhec.passes import annotate_states_ckks  # noqa: F401
from fhec.passes import pack_slots_ckks  # noqa: F401
from fhec.passes import insert_relinearize_ckks  # noqa: F401
from fhec.passes import insert_rescale_ckks  # noqa: F401
from fhec.passes import insert_mod_switch_ckks  # noqa: F401
from fhec.passes import select_params_ckks  # noqa: F401
from fhec.passes import validate_levels_ckks  # noqa: F401
from fhec.passes import validate_scales_ckks  # noqa: F401
from fhec.passes import promote_parameters  # noqa: F401
from fhec.passes import differentiate  # noqa: F401
from fhec.passes.base import (
    PASS_REGISTRY,
    Pass,
    PassContext,
    PassKind,
    make_pass,
    parse_pipeline,
    register_pass,
    run_pipeline,
)
from fhec.passes.pipelines import COMMON_PIPELINE, pipeline_for

__all__ = [
    "COMMON_PIPELINE",
    "PASS_REGISTRY",
    "Pass",
    "PassContext",
    "PassKind",
    "make_pass",
    "parse_pipeline",
    "pipeline_for",
    "register_pass",
    "run_pipeline",
]
