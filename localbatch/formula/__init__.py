"""The autoscale formula language of Batch pools: `parse` a formula (no eval), `evaluate` it against a pool."""

from .evaluate import Context, Outcome, evaluate, show
from .parse import (
    DEALLOCATION,
    MAX_FORMULA_CHARS,
    TARGET_DEDICATED,
    TARGET_LOW_PRIORITY,
    FormulaError,
    Statement,
    parse,
)

__all__ = ["DEALLOCATION", "MAX_FORMULA_CHARS", "TARGET_DEDICATED", "TARGET_LOW_PRIORITY", "Context", "FormulaError",
           "Outcome", "Statement", "evaluate", "parse", "show"]
