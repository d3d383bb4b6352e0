"""Quickstart: simulate -> cross-validate -> fit -> save -> load -> predict (under a minute).

Run it from the repository root::

    python examples/quickstart.py [--patients 30] [--out runs/quickstart-model]

It uses the built-in SLICE-3D simulator, so nothing needs downloading. With the
real Kaggle files, replace the simulation by
``lesionboost.read_metadata("train-metadata.csv")``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import lesionboost as lb


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=30, help="simulated patients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="model directory (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()

    # 1. Data: simulated training patients plus new, unseen test patients.
    sim = lb.simulate_slice3d(
        args.patients, n_test_patients=max(2, args.patients // 4), seed=args.seed
    )
    train, test = sim.train, sim.test
    print(
        f"simulated {train.height:,} training lesions of {args.patients} patients "
        f"({int(train['target'].sum())} malignant); {test.height:,} test lesions"
    )

    # 2. A small but complete model: all features, LightGBM + XGBoost, two bags.
    model = lb.LesionBoostClassifier(
        members=("lightgbm", "xgboost"),
        n_bags=2,
        lightgbm_params={"n_estimators": 80},
        xgboost_params={"n_estimators": 80},
        random_state=args.seed,
    )

    # 3. Patient-grouped cross-validation: no patient is scored by a model that saw it.
    folds = lb.patient_folds(train, n_splits=3, seed=args.seed)
    result = lb.cross_val_oof(model, train, folds)
    print(
        f"out-of-fold pAUC above 80% TPR: {result.pauc:.4f} "
        f"(folds: {', '.join(f'{s:.3f}' for s in result.fold_scores)}; max 0.2)"
    )

    # 4. Fit on every training patient and save as native booster files + manifest.json.
    # The train-only columns never become features; lesion_id teaches the follow-up score.
    model.fit(train)
    folder = Path(tempfile.mkdtemp()) if args.out is None else args.out.parent
    path = lb.save_model(
        model,
        folder / (args.out.name if args.out else "model"),
        metrics=result,
        training_data=train,
        overwrite=True,
    )
    print(f"saved the model to {path}")

    # 5. Load it back (no pickle) and score the new patients: identical scores.
    loaded = lb.load_model(path)
    scores = loaded.predict_proba(test)[:, 1]
    assert np.array_equal(scores, model.predict_proba(test)[:, 1])
    top = loaded.explain(test, top_k=3).sort("score", descending=True).head(3)
    print("highest-risk test lesions and the features that raised their scores:")
    for row in top.iter_rows(named=True):
        print(f"  {row['isic_id']}  {row['score']:.4f}  {', '.join(row['top_features'])}")
    if sim.test_oracle is not None:
        truth = test.select("isic_id").join(
            sim.test_oracle, on="isic_id", how="left", maintain_order="left"
        )
        print(
            f"correlation of test scores with the simulator's true risk: "
            f"{np.corrcoef(scores, truth['logit'].to_numpy())[0, 1]:.3f}"
        )
    elapsed = time.perf_counter() - start
    print(f"done in {elapsed:.1f} s")
    return {"pauc": result.pauc, "seconds": elapsed}


if __name__ == "__main__":
    main()
