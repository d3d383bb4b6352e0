"""A clinical evaluation of malignancy scores: bootstrap intervals, calibration, subgroups.

:func:`evaluate` takes labels, scores and the metadata of the scored lesions and
returns an :class:`Evaluation`:

- the ISIC 2024 pAUC above 80 % TPR, the AUC and the top-15 sensitivity, each with
  a 95 % percentile interval from a *patient-level* bootstrap (patients are drawn
  with replacement, all their lesions follow, because lesions of one patient are
  correlated);
- operating points at 80, 90 and 95 % sensitivity: threshold, specificity,
  referrals per 1,000 lesions and per patient, lesions examined per cancer found;
- calibration: Brier score, calibration intercept and slope, calibration in the
  large and a reliability curve with quantile bins;
- subgroups: sex, age band, anatomical site, centre (``attribution``), tile type
  and skin tone (individual typology angle), with the weakest level flagged.

:meth:`Evaluation.to_dict` gives JSON-ready plain Python and
:meth:`Evaluation.to_html` a self-contained HTML fragment of tables.

The package's modules, in the order data flows through them: ``_evaluate``
(input checks, operating points, assembly), ``_bootstrap`` (patient draws and the
replicate ROC curves), ``_calibration``, ``_subgroups`` and ``_result`` (the
:class:`Evaluation` and its JSON and HTML forms).
"""

from ._bootstrap import Interval
from ._calibration import LOGIT_EPS, RELIABILITY_BINS
from ._evaluate import evaluate
from ._result import SENSITIVITIES, TOP_K, Evaluation
from ._subgroups import AGE_BANDS, ITA_BANDS, MIN_MALIGNANT_FOR_WEAKEST, UNKNOWN

__all__ = [
    "AGE_BANDS",
    "Evaluation",
    "ITA_BANDS",
    "Interval",
    "LOGIT_EPS",
    "MIN_MALIGNANT_FOR_WEAKEST",
    "RELIABILITY_BINS",
    "SENSITIVITIES",
    "TOP_K",
    "UNKNOWN",
    "evaluate",
]
