"""Layout and reduction ops: reshape, transpose, concat, pad, reductions, argmax."""
