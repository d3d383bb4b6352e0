"""``lesionboost compare``: two cv runs on the same folds, tested fold by fold.

:func:`run_compare` pairs the per-fold pAUCs of two ``lesionboost cv`` run folders
that were cross-validated on the same lesions, labels and folds (checked through the
fingerprints of ``cv.json`` and the ``folds.parquet`` of each), and reports the mean
difference, the sign counts and a two-sided Wilcoxon signed-rank test.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ._output import EXIT_OK, UsageError, emit
from ._runs import _read_json


def _compare_side(path: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    cv_path = path / "cv.json"
    if not cv_path.exists():
        raise FileNotFoundError(
            f"{cv_path} does not exist: {path} is not a finished `lesionboost cv` run; compare "
            "takes two cv run folders."
        )
    cv = _read_json(cv_path, "lesionboost cv")
    folds_path = path / "folds.parquet"
    if not folds_path.exists():
        raise FileNotFoundError(f"{folds_path} does not exist; rerun `lesionboost cv`.")
    return cv, pl.read_parquet(folds_path, columns=["isic_id", "repeat", "fold"])


def _describe(cv: dict[str, Any]) -> str:
    scheme = cv.get("scheme", {})
    if scheme.get("cv") == "centre":
        return f"leave-one-centre-out, {scheme.get('n_splits')} centres"
    return (
        f"patient CV, {scheme.get('n_splits')} folds x {scheme.get('n_repeats')} "
        f"repeat(s), seed {scheme.get('seed')}"
    )


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def run_compare(args: argparse.Namespace) -> int:
    from scipy.stats import wilcoxon

    path_a, path_b = Path(args.run_a), Path(args.run_b)
    for path in (path_a, path_b):
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; pass two `lesionboost cv` runs.")
    if path_a.resolve() == path_b.resolve():
        raise UsageError(
            f"compare needs two different runs; both arguments name {path_a.resolve()}."
        )
    (cv_a, folds_a), (cv_b, folds_b) = _compare_side(path_a), _compare_side(path_b)
    if cv_a.get("lesions_fingerprint") != cv_b.get("lesions_fingerprint"):
        raise ValueError(
            f"{path_a} and {path_b} were cross-validated on different lesions or labels "
            f"({cv_a.get('data', {}).get('source')} vs {cv_b.get('data', {}).get('source')}); "
            "a paired comparison needs the same data and folds."
        )
    if cv_a.get("fingerprint") != cv_b.get("fingerprint") or not folds_a.equals(folds_b):
        raise ValueError(
            f"{path_a} and {path_b} were cross-validated on different folds ({_describe(cv_a)} "
            f"vs {_describe(cv_b)}); a paired comparison needs the same folds: rerun one with "
            "the other's --cv, --folds, --repeats and --seed."
        )
    pairs = []
    for rep_a, rep_b in zip(cv_a["repeats"], cv_b["repeats"], strict=True):
        for fold, (a, b) in enumerate(zip(rep_a["fold_scores"], rep_b["fold_scores"], strict=True)):
            if a is not None and b is not None:
                pairs.append(
                    {"repeat": rep_a["repeat"], "fold": fold, "a": a, "b": b, "difference": a - b}
                )
    if not pairs:
        raise ValueError("no fold has a pAUC in both runs (every fold lacks a malignant lesion).")
    diff = np.array([p["difference"] for p in pairs])
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        statistic, p_value = 0.0, 1.0
    else:
        test = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(test.statistic), float(test.pvalue)
    mean = float(diff.mean())
    better = "A" if mean > 0 else "B" if mean < 0 else "neither"
    signs = {
        "a_better": int((diff > 0).sum()),
        "b_better": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
    }
    smallest = 2.0 / 2**nonzero if nonzero else 1.0  # the exact two-sided test's floor
    summary: dict[str, Any] = {
        "run_a": str(path_a),
        "run_b": str(path_b),
        "scheme": _describe(cv_a),
        "n_pairs": len(pairs),
        "pairs": pairs,
        "mean_fold_pauc_a": float(np.mean([p["a"] for p in pairs])),
        "mean_fold_pauc_b": float(np.mean([p["b"] for p in pairs])),
        "pooled_pauc_a": [r["pauc"] for r in cv_a["repeats"]],
        "pooled_pauc_b": [r["pauc"] for r in cv_b["repeats"]],
        "mean_difference": mean,
        "sd_difference": float(diff.std(ddof=1)) if diff.size > 1 else None,
        "signs": signs,
        "wilcoxon": {
            "statistic": statistic,
            "p_value": p_value,
            "n_nonzero": nonzero,
            "alternative": "two-sided",
            "smallest_possible_p": min(1.0, smallest),
        },
        "better": better,
        "significant_at_0.05": p_value < 0.05,
    }
    verdict = (
        "neither: the fold pAUCs are identical"
        if better == "neither"
        else f"{better} by the mean difference ("
        f"{'significant' if p_value < 0.05 else 'not significant'} at the 5 % level)"
    )
    text = "\n".join(
        [
            f"A = {path_a}\nB = {path_b}",
            f"  paired folds        {len(pairs)} ({_describe(cv_a)})",
            f"  mean fold pAUC      A {summary['mean_fold_pauc_a']:.4f}   B "
            f"{summary['mean_fold_pauc_b']:.4f}",
            f"  pooled OOF pAUC     A {_values(summary['pooled_pauc_a'])}   B "
            f"{_values(summary['pooled_pauc_b'])} (per repeat)",
            f"  difference A - B    mean {mean:+.4f}"
            + (
                f" (SD {summary['sd_difference']:.4f})"
                if summary["sd_difference"] is not None
                else ""
            ),
            f"  signs               A better in {signs['a_better']} fold(s), B in "
            f"{signs['b_better']}, tied in {signs['ties']}",
            f"  Wilcoxon signed-rank p = {p_value:.4f} (two-sided, {nonzero} non-zero pair(s); "
            f"the smallest p possible is {min(1.0, smallest):.4f})",
            f"  better              {verdict}",
        ]
    )
    emit(args, summary, text)
    return EXIT_OK
