"""Lesion features in polars: derived attributes and patient-relative ("ugly duckling") features.

- :class:`LesionFeaturizer` -- the scikit-learn transformer (``_featurizer.py``);
- the lazy polars plan of every feature group (``_plan.py``);
- the derived lesion attributes of the public tabular lineage (``_derived.py``);
- :data:`GROUPINGS`, :func:`output_names`, :func:`z_name`, :func:`groupings_for`,
  :func:`zscored_columns`, :func:`ranked_columns`, :class:`PandasOps` -- for analysis
  and benchmarks.
"""

from ._derived import DERIVED_FEATURES, OUTLIER_COLUMNS, PandasOps
from ._featurizer import DERIVED_NAMES, GROUPS, LesionFeaturizer
from ._plan import GROUPINGS, output_names, z_name
from ._plan import _groupings as groupings_for
from ._plan import _numeric_columns as zscored_columns
from ._plan import _ranked as ranked_columns

__all__ = [
    "LesionFeaturizer",
    "GROUPS",
    "OUTLIER_COLUMNS",
    "DERIVED_NAMES",
    "DERIVED_FEATURES",
    # for analysis and benchmarks
    "GROUPINGS",
    "output_names",
    "z_name",
    "groupings_for",
    "zscored_columns",
    "ranked_columns",
    "PandasOps",
]
