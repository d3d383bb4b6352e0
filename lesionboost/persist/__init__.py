"""Model files that are safe to load: native booster files plus a JSON manifest, no pickle.

A saved model is a directory::

    model/
      manifest.json              everything that is not a booster (see below)
      members/lightgbm-0.txt     LightGBM text model, one per bag
      members/catboost-0.cbm     CatBoost binary model
      members/lightgbm-raw-0.txt a member on a view: its column indices are in the manifest
      members/linear-0.json      the linear member: knots, levels, coefficients, rule trees
      members/xgboost-0.ubj      XGBoost UBJSON model (an XGBoost member)
      image/embedder/<name>.onnx the ONNX embedder of a model with image features
      image/scorer/              the train_embedder() fold models, their JSON and OOF scores

``manifest.json`` holds the format version, the lesionboost, Python and
library versions, ``schema.SCHEMA_VERSION``, the estimator's parameters, the
featurizer state (``LesionFeaturizer.to_dict()``: feature names and category
maps), the ensemble state (classes, feature names, categorical columns and
levels, blend weights, log-odds offsets and the rank reference arrays), every
member file with its size and SHA-256, a fingerprint of the training data,
cross-validation metrics and a SHA-256 of the manifest itself.

A model with image features stands alone: everything its predictions need
besides the new crops -- the ONNX embedder (none for the built-in one; for a
model fitted on a ``lesionboost embed`` table, the model that made the table),
the fold models of a ``train_embedder()`` scorer and the fitted image state --
lies under ``image/``, each file listed in the manifest's ``image`` section
with its size and SHA-256, and :func:`load_model` points the estimator's
``image_model`` at those copies. The folder can be moved or copied to another
machine; the paths it was trained from are not needed.

:func:`load_model` checks what it reads before returning a model, so that a
modified folder fails at load, never inside a prediction: hashes of every
listed file (and no unlisted file under ``image/``), category levels unique
and in the sorted order fit writes (a level's code is its position), known
categorical columns, feature lists that agree between the featurizer, the
ensemble and every booster file, and image state shapes that agree with the
featurizer's image columns.

Why this is safe: :func:`load_model` parses JSON and hands each member file's
bytes, after checking its hash, to its library's own model parser (LightGBM
text, XGBoost UBJSON, CatBoost cbm); none of them runs code. Member kinds and
model classes read from the file are looked up in fixed tables, never
imported by name, and member paths must stay inside the directory. Pickle and
joblib run arbitrary code on load, so lesionboost never writes them.

The code lies in private modules, one way down (each imports only those below it):

- :func:`save_model` and :func:`load_model` (``_api.py``);
- copying the image models into the folder and pointing a loaded model at the
  copies (``_image.py``);
- the checks of the featurizer, estimator and image-feature state (``_estimator.py``);
- writing and restoring the ensemble's boosters and state (``_ensemble.py``);
- the manifest: format constants, hashing, JSON conversion, :func:`fingerprint`
  and reading ``manifest.json`` (``_manifest.py``).
"""

from ._api import load_model, save_model
from ._manifest import FORMAT_VERSION, fingerprint

# not in __all__: the folder marker and the manifest hash, for the tests and tools
# that import them from lesionboost.persist
from ._manifest import WRITTEN_BY as WRITTEN_BY
from ._manifest import _canonical as _canonical
from ._manifest import _sha256 as _sha256

__all__ = ["save_model", "load_model", "fingerprint", "FORMAT_VERSION"]
