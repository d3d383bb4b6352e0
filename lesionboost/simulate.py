"""A calibrated SLICE-3D simulator with a known oracle risk and rendered crops.

The real ISIC 2024 data cannot be shipped, so every demo, test and benchmark of
lesionboost runs on this simulator. :func:`simulate_slice3d` returns metadata
with the exact Kaggle schema (55 train columns, 44 test columns, same order and
dtypes), the true risk of every lesion (the *oracle*), and renders JPEG crops on
demand; :func:`write_slice3d` writes the Kaggle files.

Generative story
----------------
1. **Patients.** Each patient belongs to one of the 7 training centres, laid out
   so that the centres' shares of *lesions* match the full file (MSKCC 32 %,
   Barcelona 26 %, Basel 16 %, Frazer 13 %, ACEMID 7 %, Vienna 3 %, Athens 2 %).
   The centre fixes the licence, the tile type (MSKCC 88 % white-light tiles,
   Frazer 4 %, the rest cross-polarised "XP") and its missing-value habits (sex
   mostly missing at Basel, sites at Frazer, ...). Age (multiples of 5, public
   age histogram), sex (68 % male among known) and the lesion count (heavy-tailed:
   quantiles 1 / 115 / 242 / 478 / 823 / 2,158 / 9,184 at p0/p25/p50/p75/p90/p99/max,
   so 1,042 patients hold ~401k lesions) are drawn per patient, as is the
   patient's own naevus phenotype -- a random effect on every lesion column.
2. **Lesions (the benign population model).** Body location is drawn from the 21
   levels with their public frequencies ("Unknown" at the centre's rate) and maps
   deterministically to the 8 simple locations and 5 sites; 3D coordinates come
   from per-location Gaussian copulas over empirical marginals (a few MSKCC
   patients have a shifted body frame with negative y). Twenty-one *free* lesion
   columns (size, minor/major ratio, area ratio, border ratio, skin L/A/B, the
   three colour deltas, deltaLB excess, deltaLBnorm, stdL, stdLExt, colour
   variation x3, border, symmetry, eccentricity, nevus confidence) are drawn as
   normal scores = covariate means (tile type, site, centre, age, sex) + patient
   phenotype + lesion noise, with between- and within-patient correlation
   matrices, and mapped through the empirical quantiles of the real benign rows
   (all fitted once, see :mod:`lesionboost._simulate_calibration`). Every other
   column follows by the exact relations of the real data: L = Lext + deltaL (same
   for A, B), C = hypot(A, B), H = atan2(B, A) in degrees, deltaLB =
   hypot(deltaL, deltaB) + excess, minor axis = ratio x long diameter (<= it),
   area from the ellipse, perimeter = sqrt(ratio x area), colour variation zero
   on the same rows, capped scores, angle in steps of 5, size to 2 decimals.
3. **Malignancy.** Only now is the risk computed, from the observed columns:
   ``logit = centre + shared + log(exp(h_melanoma) + exp(h_keratinocyte)) + s * u``.
   The shared part holds age, sex, head/neck site, height on the body, skin
   lightness, hue and texture around the lesion, the patient's lesion count,
   the patient-relative ("ugly duckling") size terms -- within-patient and within
   patient x site z-scores -- and the follow-up score (step 4), so that cancers
   look like the lesions clinics follow up, as on the real sample. The melanoma
   hazard grows with size, colour variation, border irregularity and relative
   colour variation; the keratinocyte (BCC/SCC) hazard with a redder hue, a
   lower deltaB and nevus confidence, and with a hue and nevus confidence
   unusual *for this patient*. Every term is a smooth,
   bounded, monotone function (3 tanh(v / 3)) of a standardised column or a
   z-score computed over all of the patient's rows -- what a featurizer can
   compute. ``u ~ N(0, 1)`` is the image-only component, independent of every
   column and drawn only into the pixels. Then ``target ~ Bernoulli(expit(logit))``;
   no column changes after the label is drawn, so the malignant shifts of the
   real data (area +1.4 SD, hue -1.4 SD, ...) emerge from the tilt of the risk.
   ``logit`` is the Bayes-optimal score and ``tabular_logit = logit - s * u`` the
   best any model of the metadata can do. Coefficients are fitted by exponential
   tilting (:mod:`lesionboost._simulate_riskfit`) to the prevalence (0.098 %),
   centre rates, head/neck ~8x, sex ratio, 40 % melanoma share, the "ugly
   duckling" size percentiles, 25 % of patients with a positive, the mean shifts
   of FACTS.md section 2.5, the univariate AUCs of the real sample, the
   malignant-vs-benign AUC of its follow-up score (0.726) and the pAUC of the
   oracles.
4. **Train-only columns** are drawn after the label: ``lesion_id`` on every
   malignant lesion and ~5.4 % of benign ones, chosen by a follow-up model fitted
   on the real sample (high-contrast, regular lesions and one centre, the Frazer
   Institute, far more often; drawn from that score, not from the risk);
   ``iddx_*`` from the real diagnosis vocabulary (BCC / melanoma / SCC from the
   two hazards); ``mel_*`` on invasive melanomas; a lower
   ``tbp_lv_dnn_lesion_confidence`` for malignant lesions.
5. **Images** (:mod:`lesionboost._simulate_render`): square JPEG crops, 61-239 px,
   quality 75, 4:2:0, 15 mm field of view, drawn from the row (skin colour and
   texture, lesion ellipse, colour, mottling, border) plus the image-only component
   as a dark network and a blue-white veil. When only some lesions get a crop,
   they are a seeded uniform draw that ignores the label, so a missing crop says
   nothing about malignancy.

Fidelity (``python benchmarks/fidelity.py``; 1,042 patients, seed 0)
--------------------------------------------------------------------
Measured against the real 3,449-row sample and FACTS.md (2 shared cores):

* 401,486 rows, 415 malignant (0.103 %), 24.8 % of patients with a malignant
  lesion, head/neck rate 8.22x the rest; simulated in 4.8 s; crops at
  2,104/s on one core;
* Kolmogorov-Smirnov distance of the 34 numeric columns (benign rows): median
  0.010, max 0.060 (``age_approx``); Spearman matrix difference: mean 0.021,
  max 0.087; categorical shares within 0.008 of FACTS.md;
* univariate AUCs of the 10 most discriminative real columns within 0.033 of
  the real ones (e.g. ``tbp_lv_H`` 0.210 real vs 0.216, ``tbp_lv_stdLExt``
  0.666 vs 0.666); weaker columns are looser (``tbp_lv_Lext`` 0.521 vs 0.426);
* pAUC above 80 % TPR over all rows: oracle 0.1872, tabular oracle 0.1718;
  patient-grouped 5-fold out-of-fold LightGBM on the raw columns 0.1329 (the
  band FACTS.md reports for real data is 0.12-0.15), and 0.1582 once
  within-patient z-scores are added -- the patient-relative terms carry most of
  the gap to the tabular oracle;
* a follow-up model (LightGBM of ``lesion_id`` on benign rows) ranks malignant
  lesions with AUC 0.693 (real sample: 0.836; see the README).

Examples
--------
>>> from lesionboost.simulate import simulate_slice3d
>>> sim = simulate_slice3d(20, seed=1)
>>> sim.train.width, sim.train_oracle.columns
(55, ['isic_id', 'logit', 'tabular_logit', 'followup_score'])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import special

from ._atomic import atomic_path
from ._simulate_calibration import CENTRES, SITES, load_tables
from ._simulate_population import LOCATIONS, draw_population
from ._simulate_render import render_crops
from ._simulate_risk import RiskModel, followup_score, leak_columns, risk_features
from .schema import LOCATION_TO_SIMPLE, TEST_COLUMNS, TRAIN_COLUMNS

__all__ = ["SimulatedSLICE3D", "simulate_slice3d", "write_slice3d", "render_images"]

logger = logging.getLogger(__name__)

_LONG_FORMAT_SHARE = 0.484  # rows printed with 15 significant digits (FACTS.md section 2.6)


@dataclass(frozen=True)
class SimulatedSLICE3D:
    """A simulated SLICE-3D cohort.

    Attributes
    ----------
    train : polars.DataFrame
        The 55 columns of ``train-metadata.csv`` in file order, sorted by ``isic_id``.
    train_oracle : polars.DataFrame
        ``isic_id``, ``logit`` (the true malignancy log-odds), ``tabular_logit``
        (the same without the image-only component) and ``followup_score`` (the
        log-odds, up to a constant, that a clinic follows a benign lesion up; one
        input of the risk), row-aligned with ``train``.
    test : polars.DataFrame or None
        The 44 columns of ``test-metadata.csv`` for new patients.
    test_oracle : polars.DataFrame or None
        ``isic_id``, ``target``, ``logit``, ``tabular_logit``, ``followup_score``
        for ``test``.
    image_ids : tuple of str
        The train lesions that get a rendered crop, in ``isic_id`` order: a seeded
        uniform draw that never looks at ``target`` (see :func:`simulate_slice3d`).
    seed : int
        The seed everything was drawn from; images are rendered from it too.
    """

    train: pl.DataFrame
    train_oracle: pl.DataFrame
    test: pl.DataFrame | None
    test_oracle: pl.DataFrame | None
    image_ids: tuple[str, ...]
    seed: int

    def iter_images(self, split: str = "train") -> Iterator[tuple[str, bytes]]:
        """Render the crops of ``split`` ("train": :attr:`image_ids`; "test": every row)."""
        if split == "train":
            if not self.image_ids:
                return iter(())
            keep = pl.Series("isic_id", self.image_ids)
            mask = self.train.get_column("isic_id").is_in(keep.implode())
            return render_images(self.train.filter(mask), self.train_oracle.filter(mask), self.seed)
        if split == "test":
            if self.test is None or self.test_oracle is None:
                raise ValueError("This simulation has no test patients; pass n_test_patients > 0.")
            return render_images(self.test, self.test_oracle, self.seed + 1)
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def render_images(
    metadata: pl.DataFrame, oracle: pl.DataFrame, seed: int = 0
) -> Iterator[tuple[str, bytes]]:
    """Render the JPEG crop of every row of ``metadata``.

    Parameters
    ----------
    metadata : polars.DataFrame
        Simulated metadata (train or test columns).
    oracle : polars.DataFrame
        Its oracle, row-aligned: the image-only component is recovered as
        ``(logit - tabular_logit) / image_sd`` and drawn into the pixels.
    seed : int, default=0
        Fixes crop sizes, textures and hairs.

    Yields
    ------
    (str, bytes)
        ``isic_id`` and the JPEG file bytes.
    """
    if metadata.height != oracle.height or not metadata.get_column("isic_id").equals(
        oracle.get_column("isic_id")
    ):
        raise ValueError("metadata and oracle must hold the same isic_id values in the same order.")
    image_sd = max(RiskModel.from_tables().image_sd, 1e-12)
    gap = (oracle.get_column("logit") - oracle.get_column("tabular_logit")).to_numpy()
    return render_crops(metadata, gap / image_sd, seed)


# --------------------------------------------------------------------------- simulate
def _unique_ids(rng: np.random.Generator, n: int, parity: int, prefix: str) -> np.ndarray:
    # Train ids are even and test ids odd, so the two splits never collide.
    numbers = 2 * rng.choice(4_990_000, n, replace=False) + 15_000 + parity
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), 7))


def _series(name: str, values: Any, dtype: pl.DataType) -> pl.Series:
    array = np.asarray(values)
    if array.dtype == object:  # strings with missing values
        return pl.Series(name, array.tolist(), dtype=dtype)
    if dtype == pl.Float64:
        return pl.Series(name, array.astype(np.float64), nan_to_null=True)
    return pl.Series(name, array).cast(dtype)


def _cohort(
    n_patients: int, seeds: list[np.random.SeedSequence], parity: int, train: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    tables = load_tables()
    risk = RiskModel.from_tables(tables)
    population_rng, risk_rng, leak_rng, id_rng = (np.random.default_rng(s) for s in seeds)
    pop = draw_population(n_patients, population_rng, tables)
    lesion, patient = pop.lesion, pop.patient
    n = pop.n_lesions
    owner = lesion["patient"]
    centre = patient["centre"][owner]
    followup = followup_score(pop.normal_scores, lesion, pop.covariates, tables)
    features = risk_features(lesion, patient, followup, tables)
    tabular = risk.tabular_logit(features, centre)
    image_u = risk_rng.standard_normal(n)
    logit = tabular + risk.image_sd * image_u
    target = (risk_rng.random(n) < special.expit(logit)).astype(np.int64)

    isic = _unique_ids(id_rng, n, parity, "ISIC_")
    patient_ids = _unique_ids(id_rng, n_patients, parity, "IP_")
    location = np.asarray(LOCATIONS, dtype=object)[lesion["location"]]
    male = patient["male"][owner]
    names = [name for name, *_ in CENTRES]
    licences = [licence for _, _, _, licence, _ in CENTRES]
    data: dict[str, Any] = {
        "isic_id": isic,
        "target": target,
        "patient_id": patient_ids[owner],
        "age_approx": patient["age"][owner],
        "sex": np.where(male == 0.5, None, np.where(male == 1.0, "male", "female")),
        "anatom_site_general": np.asarray(SITES, dtype=object)[lesion["site"]],
        "clin_size_long_diam_mm": lesion["clin_size_long_diam_mm"],
        "image_type": np.full(n, "TBP tile: close-up"),
        "tbp_tile_type": np.where(patient["white"][owner], "3D: white", "3D: XP"),
        "tbp_lv_location": location,
        "tbp_lv_location_simple": np.array([LOCATION_TO_SIMPLE[v] for v in LOCATIONS])[
            lesion["location"]
        ],
        "attribution": np.asarray(names, dtype=object)[centre],
        "copyright_license": np.asarray(licences, dtype=object)[centre],
    }
    for name in TRAIN_COLUMNS:
        if name.startswith("tbp_lv_") and name in lesion:
            data[name] = lesion[name]
    if train:
        leak = leak_columns(target, followup, features, centre, risk, leak_rng, tables)
        followed_up = leak.pop("followed_up")
        lesion_ids = _unique_ids(id_rng, n, 0, "IL_")
        data["lesion_id"] = np.where(followed_up, lesion_ids, None)
        data.update(leak)
    schema = TRAIN_COLUMNS if train else TEST_COLUMNS
    frame = pl.DataFrame([_series(name, data[name], dtype) for name, dtype in schema.items()])
    oracle = pl.DataFrame(
        {
            "isic_id": isic,
            "target": target,
            "logit": logit,
            "tabular_logit": tabular,
            "followup_score": followup,
        }
    )
    order = np.argsort(isic, kind="stable")  # Kaggle files are sorted by isic_id
    frame, oracle = frame[order], oracle[order]
    if train:
        oracle = oracle.drop("target")
    return frame, oracle


def simulate_slice3d(
    n_patients: int = 1042,
    *,
    n_test_patients: int = 0,
    images: bool | int = False,
    seed: int = 0,
) -> SimulatedSLICE3D:
    """Simulate a SLICE-3D cohort: metadata, oracle risk and (lazily) image crops.

    Parameters
    ----------
    n_patients : int, default=1042
        Training patients; 1,042 patients give ~401k lesions and ~393 malignant
        ones, like the Kaggle file.
    n_test_patients : int, default=0
        New patients for a matching ``test-metadata.csv`` (44 columns) with its own
        oracle (which also holds the hidden ``target``).
    images : bool or int, default=False
        How many train crops :meth:`SimulatedSLICE3D.iter_images` renders: an int,
        ``True`` for all lesions, ``False``/0 for none. The lesions are a uniform
        random draw without replacement, independent of the label (choosing
        malignant lesions first would make "no crop" a label leak), reproducible
        from ``seed`` and nested: the first ``k`` of a seed's draw are the same for
        every count >= ``k``. Crops are rendered lazily.
    seed : int, default=0
        Everything is a pure function of the seed; train rows do not depend on
        ``n_test_patients`` or ``images``.

    Returns
    -------
    SimulatedSLICE3D

    Examples
    --------
    >>> sim = simulate_slice3d(30, n_test_patients=5, images=10, seed=0)
    >>> sim.test.width, len(sim.image_ids)
    (44, 10)
    >>> from lesionboost import pauc_above_tpr
    >>> y = sim.train["target"].to_numpy()
    >>> 0.0 <= pauc_above_tpr(y, sim.train_oracle["logit"].to_numpy()) <= 0.2  # doctest: +SKIP
    True
    """
    if (
        isinstance(n_patients, bool)
        or not isinstance(n_patients, (int, np.integer))
        or n_patients < 1
    ):
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}.")
    if (
        isinstance(n_test_patients, bool)
        or not isinstance(n_test_patients, (int, np.integer))
        or n_test_patients < 0
    ):
        raise ValueError(f"n_test_patients must be an integer >= 0, got {n_test_patients!r}.")
    if not isinstance(images, (bool, int, np.integer)) or (
        not isinstance(images, bool) and images < 0
    ):
        raise ValueError(f"images must be True, False or a count >= 0, got {images!r}.")
    root = np.random.SeedSequence(seed)
    train_seeds, test_seeds, image_seed = root.spawn(3)
    train, train_oracle = _cohort(int(n_patients), train_seeds.spawn(4), 0, True)
    test = test_oracle = None
    if n_test_patients:
        test, test_oracle = _cohort(int(n_test_patients), test_seeds.spawn(4), 1, False)
    count = train.height if images is True else int(images)
    image_ids = _choose_image_ids(
        train, min(count, train.height), np.random.default_rng(image_seed)
    )
    logger.info(
        "simulated %d lesions of %d patients (%d malignant)%s",
        train.height,
        n_patients,
        int(train.get_column("target").sum()),
        f" + {test.height} test lesions" if test is not None else "",
    )
    return SimulatedSLICE3D(train, train_oracle, test, test_oracle, image_ids, int(seed))


def _choose_image_ids(train: pl.DataFrame, count: int, rng: np.random.Generator) -> tuple[str, ...]:
    """The first ``count`` lesions of a seeded permutation of all rows, in file order.

    ``target`` is deliberately never read: a label-dependent choice (malignant first)
    would let a model learn the label from whether a crop exists.
    """
    if count <= 0:
        return ()
    ids = train.get_column("isic_id").to_numpy()
    chosen = rng.permutation(train.height)[:count]
    return tuple(ids[np.sort(chosen)].tolist())


# --------------------------------------------------------------------------- writing
def _long_rows(isic_ids: pl.Series) -> np.ndarray:
    """Which rows print full precision: a fixed hash of the id, so files are reproducible."""
    digits = isic_ids.str.slice(-7).cast(pl.UInt64).to_numpy()
    return ((digits * 2654435761) % 2**32) / 2**32 < _LONG_FORMAT_SHARE


def _format_floats(
    values: np.ndarray, long_rows: np.ndarray, full_repr: np.ndarray | None = None
) -> list[str | None]:
    """Kaggle's two float spellings: 7 significant digits, or 15 (both like Python repr)."""
    out: list[str | None] = [None] * len(values)
    finite = ~np.isnan(values)
    for pattern, rows in (("%.7g", finite & ~long_rows), ("%.15g", finite & long_rows)):
        index = np.flatnonzero(rows)
        texts = list(map(pattern.__mod__, values[index].tolist()))
        for i, text in zip(index.tolist(), texts, strict=True):
            out[i] = text if ("." in text or "e" in text or "n" in text) else text + ".0"
    if full_repr is not None:
        for i in np.flatnonzero(full_repr & finite).tolist():
            out[i] = repr(float(values[i]))
    return out


def _to_csv_text(frame: pl.DataFrame) -> pl.DataFrame:
    long_rows = _long_rows(frame.get_column("isic_id"))
    columns = []
    for name in frame.columns:
        column = frame.get_column(name)
        if column.dtype == pl.Float64:
            extra = None
            if name == "tbp_lv_nevi_confidence":
                # A third of the tiniest values print with all 17 digits in the real file.
                values = column.fill_null(np.nan).to_numpy()
                digits = frame.get_column("isic_id").str.slice(-7).cast(pl.UInt64).to_numpy()
                extra = long_rows & (values < 1e-8) & (digits % 3 == 0)
            text = _format_floats(column.fill_null(np.nan).to_numpy(), long_rows, extra)
            columns.append(pl.Series(name, text, dtype=pl.String))
        else:
            columns.append(column.cast(pl.String))
    return pl.DataFrame(columns)


def _write_csv(frame: pl.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp, null_value="", quote_style="necessary")
    return path


def write_slice3d(
    sim: SimulatedSLICE3D,
    out_dir: str | os.PathLike[str],
    *,
    images: bool | int | None = None,
    test_images: bool = True,
) -> dict[str, Path]:
    """Write a simulation as Kaggle files (each one atomically).

    Parameters
    ----------
    sim : SimulatedSLICE3D
        Output of :func:`simulate_slice3d`.
    out_dir : str or path-like
        Folder to write into (created if missing).
    images : bool, int or None, default=None
        Train crops to write to ``train-image.hdf5``: ``None`` uses
        ``sim.image_ids``; an int or ``True`` re-selects that many (all) with the
        same label-independent seeded draw as :func:`simulate_slice3d`.
    test_images : bool, default=True
        Write ``test-image.hdf5`` (every test lesion) when there are test patients.

    Returns
    -------
    dict of str to pathlib.Path
        ``train_metadata``, ``oracle`` and, when written, ``train_images``,
        ``test_metadata``, ``test_oracle``, ``test_images``.

    Examples
    --------
    >>> paths = write_slice3d(simulate_slice3d(5), "sim-data")  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['oracle', 'train_metadata']
    """
    from tqdm.auto import tqdm

    from .io import ImageStore

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "train_metadata": _write_csv(_to_csv_text(sim.train), folder / "train-metadata.csv"),
        "oracle": _write_csv(sim.train_oracle, folder / "oracle.csv"),
    }
    if images is not None:
        count = sim.train.height if images is True else int(images)
        rng = np.random.default_rng(np.random.SeedSequence(sim.seed).spawn(3)[2])
        sim = SimulatedSLICE3D(
            sim.train, sim.train_oracle, sim.test, sim.test_oracle,
            _choose_image_ids(sim.train, min(count, sim.train.height), rng), sim.seed,
        )  # fmt: skip
    if sim.image_ids:
        bar = tqdm(
            sim.iter_images("train"),
            total=len(sim.image_ids),
            desc="train crops",
            unit="crop",
            disable=None,
        )
        paths["train_images"] = ImageStore.write(folder / "train-image.hdf5", bar)
    if sim.test is not None and sim.test_oracle is not None:
        paths["test_metadata"] = _write_csv(_to_csv_text(sim.test), folder / "test-metadata.csv")
        paths["test_oracle"] = _write_csv(sim.test_oracle, folder / "test-oracle.csv")
        if test_images:
            bar = tqdm(
                sim.iter_images("test"),
                total=sim.test.height,
                desc="test crops",
                unit="crop",
                disable=None,
            )
            paths["test_images"] = ImageStore.write(folder / "test-image.hdf5", bar)
    return paths
