"""Classification metrics for one evaluation run.

The implementation lives in :mod:`priming.job.metrics` (the job writes them and sits
below :mod:`priming.eval`); this module is the evaluation layer's name for the same
functions: :func:`classification_report`, :func:`top_k_accuracy`,
:func:`save_predictions` and :func:`report_to_json`.
"""

from priming.job.metrics import (
    classification_report,
    report_to_json,
    save_predictions,
    top_k_accuracy,
)

__all__ = ["classification_report", "top_k_accuracy", "save_predictions", "report_to_json"]
