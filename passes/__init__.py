"""Analyses and rewrites, one pass per file; importing this package registers them all."""

from fhec.passes import (  # noqa: F401
    annotate_bit_widths,
    annotate_ranges,
    annotate_secrecy,
    annotate_states_ckks,
    approximate_activations,
    canonicalize,
    differentiate,
    eliminate_dead_code,
    expand_polynomials_ckks,
    fold_batchnorm,
    fold_constants,
    infer_shapes,
    insert_mod_switch_ckks,
    insert_relinearize_ckks,
    insert_rescale_ckks,
    lower_to_integer,
    pack_slots_ckks,
    promote_parameters,
    quantize_tfhe,
    replicate_parameters_ckks,
    round_accumulators,
    select_params_ckks,
    select_rotation_keys_ckks,
    split_epilogue_ckks,
    validate_levels_ckks,
    validate_scales_ckks,
)
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
