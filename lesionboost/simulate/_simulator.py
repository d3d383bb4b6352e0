"""``simulate_slice3d``: a calibrated SLICE-3D cohort with a known oracle risk and rendered crops.

:func:`simulate_slice3d` returns metadata with the exact Kaggle schema (55 train
columns, 44 test columns, same order and dtypes), the true risk of every lesion
(the *oracle*) and renders JPEG crops on demand; :func:`write_slice3d` writes the
Kaggle files. The generative story (patients, lesions, risk, train-only columns,
images) and the fidelity checks are in ``docs/simulator.md``.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType
from scipy import special

from .._utils._atomic import atomic_path
from .._utils._outputs import check_folder_output, claim, disown, entry_writer, read_marker
from ..exceptions import OutputError
from ..schema import LOCATION_TO_SIMPLE, TEST_COLUMNS, TRAIN_COLUMNS
from ._population import LOCATIONS, draw_population
from ._render import render_crops
from ._risk import RiskModel, followup_score, leak_columns, risk_features
from ._scenarios import check_scenario, mixture_weights, scenario_tabular_logit
from ._tables import CENTRES, SITES, load_tables

__all__ = ["SimulatedSLICE3D", "simulate_slice3d", "write_slice3d", "render_images"]

logger = logging.getLogger(__name__)

#: The marker of a folder written by :func:`write_slice3d`.
WRITTEN_BY = "lesionboost simulate"

_LONG_FORMAT_SHARE = (
    0.484  # rows printed with 15 significant digits (as in the public Kaggle training file)
)


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
    scenario : str
        The malignancy mechanism the labels and the oracle follow (one of
        :data:`~lesionboost.simulate.SCENARIOS`; ``"default"`` is the calibrated risk;
        the weights of ``"mixed"`` are ``mixture_weights(seed)``).
    """

    train: pl.DataFrame
    train_oracle: pl.DataFrame
    test: pl.DataFrame | None
    test_oracle: pl.DataFrame | None
    image_ids: tuple[str, ...]
    seed: int
    scenario: str = "default"

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


def _series(name: str, values: Any, dtype: PolarsDataType) -> pl.Series:
    array = np.asarray(values)
    if array.dtype == object:  # strings with missing values
        return pl.Series(name, array.tolist(), dtype=dtype)
    if dtype == pl.Float64:
        return pl.Series(name, array.astype(np.float64), nan_to_null=True)
    return pl.Series(name, array).cast(dtype)


def _cohort(
    n_patients: int,
    seeds: list[np.random.SeedSequence],
    parity: int,
    train: bool,
    scenario: str = "default",
    weights: dict[str, float] | None = None,
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
    if scenario != "default":
        tabular = scenario_tabular_logit(
            scenario, lesion, patient, features, tabular, risk, weights
        )
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
        "sex": np.where(male == 0.5, np.array(None), np.where(male == 1.0, "male", "female")),
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
        data["lesion_id"] = np.where(followed_up, lesion_ids, np.array(None))
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
    scenario: str = "default",
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
    scenario : str, default="default"
        How malignancy depends on the lesion and its patient: ``"default"`` (the
        risk fitted to the real data) or another of
        :data:`~lesionboost.simulate.SCENARIOS` (``docs/simulator.md``,
        "Scenarios"). Every scenario draws the same population for a seed (patients,
        columns, ids, image choice); only the risk, the labels and what is drawn after
        the label (the train-only columns) differ. ``"mixed"`` mixes the other
        mechanisms with weights drawn from ``seed``.

    Returns
    -------
    SimulatedSLICE3D

    Raises
    ------
    ValueError
        An argument is out of range or ``scenario`` is not a known scenario.

    Examples
    --------
    >>> sim = simulate_slice3d(30, n_test_patients=5, images=10, seed=0)
    >>> sim.test.width, len(sim.image_ids)
    (44, 10)
    >>> from lesionboost import pauc_above_tpr
    >>> y = sim.train["target"].to_numpy()
    >>> pauc_above_tpr(y, sim.train_oracle["logit"].to_numpy()) > 0.1  # the oracle ranks well
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
    check_scenario(scenario)
    weights = mixture_weights(seed) if scenario == "mixed" else None
    root = np.random.SeedSequence(seed)
    train_seeds, test_seeds, image_seed = root.spawn(3)
    train, train_oracle = _cohort(int(n_patients), train_seeds.spawn(4), 0, True, scenario, weights)
    test = test_oracle = None
    if n_test_patients:
        test, test_oracle = _cohort(
            int(n_test_patients), test_seeds.spawn(4), 1, False, scenario, weights
        )
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
    return SimulatedSLICE3D(train, train_oracle, test, test_oracle, image_ids, int(seed), scenario)


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


def check_simulation_folder(
    out_dir: str | os.PathLike[str],
    *,
    images: bool,
    test: bool,
    test_images: bool = True,
    overwrite: bool = False,
    option: str = "the simulation folder",
) -> list[str]:
    """Check that a simulation may be written to ``out_dir``; return the file names it writes.

    Raises
    ------
    OutputError
        ``out_dir`` holds files lesionboost did not write, or an earlier
        simulation's files and ``overwrite`` is False.
    """
    folder = Path(out_dir)
    check_folder_output(folder, written_by=WRITTEN_BY, option=option)
    names = ["train-metadata.csv", "oracle.csv"] + (["train-image.hdf5"] if images else [])
    if test:
        names += ["test-metadata.csv", "test-oracle.csv"]
        names += ["test-image.hdf5"] if test_images else []
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"{folder} already holds a simulation ({', '.join(existing)}); pass --force "
            "(overwrite=True) to replace it, or choose another folder."
        )
    return names


def write_slice3d(
    sim: SimulatedSLICE3D,
    out_dir: str | os.PathLike[str],
    *,
    images: bool | int | None = None,
    test_images: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a simulation as Kaggle files (each one atomically).

    The folder must be new, empty or an earlier simulation's: a folder holding
    files lesionboost did not write is refused before anything is simulated to
    disk, and an earlier simulation's files are replaced only with ``overwrite``.

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
    overwrite : bool, default=False
        Replace the files of an earlier simulation in ``out_dir``; its files that
        this simulation does not write (crops, test files) are removed, so the
        folder holds one cohort.

    Returns
    -------
    dict of str to pathlib.Path
        ``train_metadata``, ``oracle`` and, when written, ``train_images``,
        ``test_metadata``, ``test_oracle``, ``test_images``.

    Raises
    ------
    OutputError
        ``out_dir`` holds files lesionboost did not write, or an earlier
        simulation's files and ``overwrite`` is False.

    Examples
    --------
    >>> paths = write_slice3d(simulate_slice3d(5), "sim-data")
    >>> sorted(paths)
    ['oracle', 'train_metadata']
    """
    from tqdm.auto import tqdm

    from ..io import ImageStore

    folder = Path(out_dir)
    will_write = check_simulation_folder(
        folder, images=bool(sim.image_ids or images), test=sim.test is not None,
        test_images=test_images, overwrite=overwrite,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    claim(folder, will_write, written_by=WRITTEN_BY)
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
            sim.scenario,
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
    if overwrite:
        _remove_stale_files(folder, [path.name for path in paths.values()])
    return paths


#: Every file a simulation folder can hold.
SIMULATION_FILES = (
    "train-metadata.csv",
    "oracle.csv",
    "train-image.hdf5",
    "test-metadata.csv",
    "test-oracle.csv",
    "test-image.hdf5",
)


def _remove_stale_files(folder: Path, written: Sequence[str]) -> None:
    """Delete an earlier simulation's files that the one just written does not hold.

    Only files the marker records as this command's own go; otherwise a replaced
    cohort's test or image files would stay next to the new one and be read with it.
    """
    marker = read_marker(folder)
    if marker is None:
        return
    stale = [
        name
        for name in SIMULATION_FILES
        if name not in written
        and (folder / name).is_file()
        and entry_writer(marker, name) == WRITTEN_BY
    ]
    for name in stale:
        (folder / name).unlink()
    if stale:
        disown(folder, stale)
