"""``OnnxEmbedder``: any image ONNX model over a SLICE-3D HDF5 file, on CUDA or CPU.

One onnxruntime ``InferenceSession`` runs batches in the calling thread while
:func:`~lesionboost.image._decode.iter_decoded` reads and decodes the next
crops in background decoder processes or threads (onnxruntime releases the
GIL while it runs), so decoding and inference overlap.

How the input is prepared is read, in this order, from

1. the model's ``metadata_props`` (keys in :data:`METADATA_KEYS`), which
   models built or trained by lesionboost always carry;
2. the constructor arguments;
3. the model's input shape (a static ``(N, 3, H, W)`` or ``(N, H, W, 3)``).

An argument that contradicts the model's metadata is an error rather than a
silent override: the metadata records how the model was trained.

The preparation itself runs inside the model
(:func:`~lesionboost.image._preprocess.with_preprocessing`): the session
takes the decoded ``uint8`` NHWC batch, so the host ships a quarter of the
bytes of a float batch and does no per-pixel work. On CUDA the batch goes
through onnxruntime's I/O binding, and the precision is ``fp32`` (TF32 off:
CUDA matches the CPU to ~6e-4) unless ``tf32`` or ``fp16`` is asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._utils._imports import import_optional
from ..exceptions import ModelFileError
from ..io import ImageStore
from ._decode import DecodeStats, iter_decoded
from ._metadata import METADATA_KEYS, _parse_triple, _triple
from ._preprocess import (
    PRECISIONS,
    InputSpec,
    Precision,
    cuda_options,
    host_prepare,
    to_float16,
    with_preprocessing,
)

__all__ = ["OnnxEmbedder"]

logger = logging.getLogger(__name__)


_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}

#: Crops per ``InferenceSession.run`` on the CPU: small batches stay in the CPU caches
#: (the built-in embedder runs as fast at 64 as at 256 crops, with a quarter of the memory).
BATCH_SIZE_CPU = 64
#: Crops per run on CUDA: a GPU needs large batches to fill; 256 crops of 224 px are
#: 38 MB of uint8 per transfer.
BATCH_SIZE_CUDA = 256

ProviderSpec = Literal["auto", "cpu", "cuda"] | Sequence[str | tuple[str, dict[str, Any]]]


def _ort() -> Any:
    return import_optional("onnxruntime", purpose="running ONNX image models")


def _resolve_providers(providers: ProviderSpec) -> tuple[list[Any], bool]:
    """Return the provider list for the session and whether it lists CUDA.

    A request for CUDA that this onnxruntime cannot serve at all (the CPU
    build) warns here and asks for CPU only.
    """
    available = _ort().get_available_providers()
    if isinstance(providers, str):
        choice = providers.lower()
        if choice == "auto":
            if _CUDA in available:
                return [_CUDA, _CPU], True
            return [_CPU], False
        if choice == "cpu":
            return [_CPU], False
        if choice == "cuda":
            if _CUDA not in available:
                warnings.warn(
                    "CUDA was requested for the image model but this onnxruntime has no "
                    f"CUDAExecutionProvider (available: {', '.join(available)}); running on CPU. "
                    'Install the GPU build with: pip install "lesionboost[gpu]" (it replaces '
                    "onnxruntime with onnxruntime-gpu).",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return [_CPU], False
            return [_CUDA, _CPU], True
        raise ValueError(
            f"providers must be 'auto', 'cpu', 'cuda' or a list of onnxruntime provider "
            f"names, got {providers!r}."
        )
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(
            f"onnxruntime providers {unknown} are not available here (available: "
            f"{', '.join(available)}). Pass 'auto' to pick CUDA when present, else CPU."
        )
    return list(providers), _CUDA in names


def _with_precision(providers: list[Any], precision: str) -> list[Any]:
    """The provider list with the CUDA options of ``precision`` (TF32 on or off) filled in.

    An explicit ``use_tf32`` that contradicts ``precision`` is an error: the
    precision is recorded with the embeddings and must be what ran.
    """
    wanted = cuda_options(precision)
    out: list[Any] = []
    for entry in providers:
        name, options = (entry[0], dict(entry[1])) if isinstance(entry, tuple) else (entry, {})
        if name == _CUDA:
            given = options.get("use_tf32")
            if given is not None and str(int(given)) != wanted["use_tf32"]:
                raise ValueError(
                    f"The CUDA provider option use_tf32={given!r} contradicts precision="
                    f"{precision!r}; pass precision='tf32' for TF32, or leave use_tf32 out."
                )
            options.update(wanted)
            out.append((name, options))
        else:
            out.append(entry)
    return out


class OnnxEmbedder:
    """Embed SLICE-3D crops with an ONNX image model through onnxruntime.

    Parameters
    ----------
    model : str, path-like, bytes or None, default=None
        An ``.onnx`` file (or its bytes). ``None`` uses the built-in label-free
        embedder (:func:`lesionboost.image.build_builtin_embedder`).
    providers : {"auto", "cpu", "cuda"} or list, default="auto"
        "auto" runs on CUDA when onnxruntime-gpu sees a GPU, else on CPU. A
        list is passed to onnxruntime unchanged. The provider that actually
        runs is checked with ``get_providers()`` and logged; asking for CUDA
        without getting it raises a ``RuntimeWarning`` and runs on CPU.
    precision : {"fp32", "tf32", "fp16"}, optional
        Numeric precision; default "fp32". "fp32" runs CUDA with TF32 off, so
        CUDA embeddings match the CPU's (to ~6e-4 for the built-in model on an
        H200, against 0.015 with onnxruntime's default TF32). "tf32" allows
        TF32 on CUDA (faster convolutions; the same as "fp32" on the CPU).
        "fp16" converts the model to half precision, its inputs and outputs
        kept in float32 (fastest on a GPU with tensor cores; slow on the CPU).
        The precision is recorded with the image features, and predicting with
        features of another precision is refused -- unless this argument is
        given explicitly, which is the override (see Notes).
    batch_size : int, optional
        Crops per ``InferenceSession.run`` call; default :data:`BATCH_SIZE_CPU`
        (64: small batches stay in the CPU caches) on CPU and
        :data:`BATCH_SIZE_CUDA` (256) on CUDA.
    input_size : int, optional
        Square input side in pixels when the model's metadata and input shape
        do not say.
    layout : {"NCHW", "NHWC"}, optional
        Tensor layout when the model's metadata and input shape do not say.
    mean, std : float or sequence of 3 floats, optional
        Per-channel normalisation on the ``[0, 1]`` pixel scale, applied as
        ``(pixel / 255 - mean) / std``; default 0 and 1. Ignored for models
        with a ``uint8`` input, which receive raw pixels. An ImageNet-pretrained
        export (e.g. from timm) wants ``mean=(0.485, 0.456, 0.406)``,
        ``std=(0.229, 0.224, 0.225)``; :func:`write_model_metadata` can store
        them in the file once.
    output : str, optional
        Name of the model output to return; default the metadata's
        ``lesionboost.output``, else the first output.
    workers : int, optional
        Decoders (default: the usable cores): processes for large requests,
        threads for small ones (:func:`~lesionboost.image.iter_decoded`).
    threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's choice).

    Attributes
    ----------
    input_size : int
    layout : str
    mean, std : tuple of 3 floats
    output : str
        The output returned by :meth:`embed`.
    providers : list of str
        The providers the session really uses, first = the one that runs.
    device : str
        "cuda" or "cpu" (or the first provider's name for other providers).
    precision : str
        "fp32", "tf32" or "fp16".
    preprocessing : str
        Where the input is prepared: "graph" (operators prepended to the
        model: ``uint8`` NHWC in), "none" (the model takes ``uint8`` NHWC
        itself, like the built-in one) or "host" (numpy, for a model whose
        graph cannot be edited, e.g. one over protobuf's 2 GB limit).
    metadata : dict of str to str
        The model's ``metadata_props``.
    stats : DecodeStats or None
        Counts of missing and corrupt crops of the last :meth:`embed` call.

    Raises
    ------
    FileNotFoundError
        ``model`` does not exist.
    ModelFileError
        The file is not an ONNX model, or its input is not one rank-4 image
        tensor, or its metadata is malformed.

    Notes
    -----
    A model fitted on image features records their precision (the fitted
    state, a saved model's manifest, the ``lesionboost.precision`` key of an
    embeddings table). At predict time a model file, the built-in embedder or
    an embeddings table is run at that precision, and an embeddings table or
    an ``OnnxEmbedder`` of another precision is refused -- unless the
    ``OnnxEmbedder`` was built with an explicit ``precision=``, e.g.
    ``model.set_params(image_model=OnnxEmbedder(path, precision="fp32"))`` to
    predict with fp32 features from a model fitted on fp16 ones.

    Examples
    --------
    >>> from lesionboost.image import OnnxEmbedder
    >>> embedder = OnnxEmbedder()  # the built-in model, on CPU here
    >>> embedder.input_size, embedder.layout, embedder.device, embedder.precision
    (64, 'NHWC', 'cpu', 'fp32')
    >>> import numpy as np
    >>> embedder.embed_images(np.zeros((2, 64, 64, 3), np.uint8)).shape[0]
    2
    >>> from lesionboost import simulate_slice3d
    >>> from lesionboost.simulate import write_slice3d
    >>> paths = write_slice3d(simulate_slice3d(5, images=4, seed=0), "data")
    >>> emb, failed = embedder.embed(paths["train_images"], return_failed=True)
    >>> emb.shape[0], int(failed.sum())
    (4, 0)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes | None = None,
        *,
        providers: ProviderSpec = "auto",
        precision: Precision | None = None,
        batch_size: int | None = None,
        input_size: int | None = None,
        layout: Literal["NCHW", "NHWC"] | None = None,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        output: str | None = None,
        workers: int | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size is not None and (
            not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        self.precision: str = precision or "fp32"
        # An explicit precision is the user's word: used even where the features a
        # model was fitted on have another (image_feature_frame checks the others).
        self._precision_given = precision is not None
        self.workers = workers
        self.stats: DecodeStats | None = None
        ort = _ort()
        if model is None:
            from ._builtin import builtin_model_bytes

            payload = builtin_model_bytes()
            self.model_path: Path | None = None
            source = "the built-in embedder"
        elif isinstance(model, (bytes, bytearray)):
            payload, self.model_path, source = bytes(model), None, "the ONNX model bytes"
        else:
            self.model_path = Path(model)
            source = str(self.model_path)
            if not self.model_path.is_file():
                raise FileNotFoundError(
                    f"Image model {self.model_path} does not exist. Pass an .onnx file, or "
                    "leave the model out to use the built-in embedder."
                )
            payload = self.model_path.read_bytes()
        self._source = source
        #: SHA-256 of the model file, to check that predict uses the model fit used.
        self.sha256 = hashlib.sha256(payload).hexdigest()
        # A file is opened by path so that models with external weight files load too.
        session_input: bytes | str = payload if self.model_path is None else str(self.model_path)

        options = ort.SessionOptions()
        # Spinning intra-op threads would steal the cores the JPEG decoders need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        provider_list, cuda_requested = _resolve_providers(providers)
        provider_list = _with_precision(provider_list, self.precision)
        self._session = self._open(session_input, options, provider_list)
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._configure_input(input_size, layout, mean, std)
        self._configure_output(output)
        self._build_session(payload, options, provider_list)
        self.providers = list(self._session.get_providers())
        active = self.providers[0]
        self.device = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}.get(
            active, active
        )
        if cuda_requested and _CUDA not in self.providers:
            # onnxruntime-gpu lists CUDA as available even without a GPU or with
            # missing CUDA/cuDNN libraries, and then silently runs on CPU.
            warnings.warn(
                f"CUDA was requested for {source} but onnxruntime could not start it (no GPU "
                "or missing CUDA/cuDNN libraries); running on CPU. Check `lesionboost "
                "show-versions` and the onnxruntime-gpu CUDA requirements.",
                RuntimeWarning,
                stacklevel=2,
            )
        if batch_size:
            self.batch_size = int(batch_size)
        else:
            self.batch_size = BATCH_SIZE_CUDA if self.device == "cuda" else BATCH_SIZE_CPU
        # I/O binding on CUDA: onnxruntime copies the uint8 batch to the device itself and
        # the outputs stay there until they are copied back once.
        self._io_binding = self.device == "cuda"
        self._output_device = "cuda" if self.device == "cuda" else "cpu"
        if self.device == "cuda":
            tf32 = self._session.get_provider_options().get(_CUDA, {}).get("use_tf32")
            logger.info("CUDA provider options: use_tf32=%s (precision %s).", tf32, self.precision)
        logger.info(
            "onnxruntime runs %s on %s at %s (input prepared: %s).",
            source,
            active,
            self.precision,
            self.preprocessing,
        )

    def _open(self, model: bytes | str, options: Any, providers: list[Any], how: str = "") -> Any:
        """An ``InferenceSession``, or a :class:`ModelFileError` naming the model."""
        ort = _ort()
        try:
            with warnings.catch_warnings():
                # onnxruntime warns on its own when a listed provider fails; we check after.
                warnings.simplefilter("ignore", UserWarning)
                return ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own non-builtin exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(
                f"onnxruntime could not load {self._source}{how} as an ONNX model ({first}). "
                "Pass a valid .onnx file, e.g. one exported with torch.onnx.export or built by "
                "lesionboost.image.build_builtin_embedder()"
                + (", or use precision='fp32'." if self.precision == "fp16" else ".")
            ) from exc

    def _build_session(self, payload: bytes, options: Any, providers: list[Any]) -> None:
        """Replace the session by one of the model with its input preparation (and in fp16).

        The first session, on the file as it is, told how the input is wanted;
        a model that takes ``uint8`` NHWC in float32 keeps it.
        """
        spec = self._spec
        self.preprocessing = "none" if spec.is_raw else "host"
        self._feed_name = spec.name
        if spec.is_raw and self.precision != "fp16":
            return
        try:
            onnx = import_optional("onnx", purpose="preparing the input inside the image model")
        except ImportError:
            if self.precision == "fp16":
                raise
            logger.info(
                "onnx is not installed: the input of %s is prepared in numpy.", self._source
            )
            return
        if self.model_path is None:
            model = onnx.load_from_string(payload)
        else:  # with any external weight files, which the new model then holds
            model = onnx.load(str(self.model_path))
        if self.precision == "fp16":
            model = to_float16(model)
        wrapped = None if spec.is_raw else with_preprocessing(model, spec)
        if wrapped is None and self.precision != "fp16":
            return  # the graph cannot take the nodes: numpy prepares the input
        if wrapped is not None:
            model, feed = wrapped
        try:
            edited = model.SerializeToString()
        except ValueError as exc:  # protobuf's 2 GB limit
            if self.precision == "fp16":
                raise ModelFileError(
                    f"{self._source} cannot be converted to float16 in memory ({exc}); use "
                    "precision='fp32' or 'tf32', or convert the file beforehand."
                ) from exc
            logger.info(
                "%s stays as it is (%s); its input is prepared in numpy.", self._source, exc
            )
            return
        how = " in float16" if self.precision == "fp16" else " with its input preparation"
        self._session = self._open(edited, options, providers, how)
        if wrapped is not None:
            self.preprocessing, self._feed_name = "graph", feed

    # ------------------------------------------------------------------ configuration
    def _configure_input(
        self,
        input_size: int | None,
        layout: str | None,
        mean: Sequence[float] | float | None,
        std: Sequence[float] | float | None,
    ) -> None:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(
                f"{self._source} has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}); an image model must take exactly one "
                "image tensor."
            )
        spec = inputs[0]
        self.input_name: str = spec.name
        shape = list(spec.shape)
        # Exports without a dynamic batch axis (common for timm/torch exports) take
        # exactly this many images per call; run_outputs pads the last slice.
        self.fixed_batch: int | None = (
            shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        )
        if len(shape) != 4:
            raise ModelFileError(
                f"{self._source} takes input {spec.name!r} of rank {len(shape)} (shape {shape}); "
                "an image model needs a rank-4 batch, (N, 3, H, W) or (N, H, W, 3)."
            )
        if spec.type not in _DTYPES:
            raise ModelFileError(
                f"{self._source} takes input {spec.name!r} of type {spec.type}; supported are "
                f"{', '.join(_DTYPES)}."
            )
        self.input_dtype = np.dtype(_DTYPES[spec.type])
        meta = self.metadata

        def pick(name: str, given: Any, parse: Any) -> Any:
            key = METADATA_KEYS[name]
            if key in meta:
                value = parse(meta[key])
                if given is not None and given != value:
                    raise ValueError(
                        f"{name}={given!r} contradicts the model's metadata {key}={meta[key]!r} "
                        f"in {self._source}; leave {name} out to use the model's value."
                    )
                return value
            return given

        def parse_int(text: str) -> int:
            try:
                return int(text)
            except ValueError:
                raise ModelFileError(
                    f"{self._source}: metadata {METADATA_KEYS['input_size']}={text!r} is not "
                    "an integer."
                ) from None

        def parse_layout(text: str) -> str:
            if text.upper() not in ("NCHW", "NHWC"):
                raise ModelFileError(
                    f"{self._source}: metadata {METADATA_KEYS['layout']}={text!r} must be "
                    "NCHW or NHWC."
                )
            return text.upper()

        resolved_layout = pick("layout", layout.upper() if layout else None, parse_layout)
        if resolved_layout is None:
            if shape[1] == 3 and shape[3] != 3:
                resolved_layout = "NCHW"
            elif shape[3] == 3 and shape[1] != 3:
                resolved_layout = "NHWC"
            else:
                raise ValueError(
                    f"Cannot tell the layout of {self._source} from its input shape {shape}; "
                    "pass layout='NCHW' or layout='NHWC'."
                )
        elif resolved_layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}.")
        channel_axis, spatial = (1, shape[2:4]) if resolved_layout == "NCHW" else (3, shape[1:3])
        if isinstance(shape[channel_axis], int) and shape[channel_axis] != 3:
            raise ModelFileError(
                f"{self._source} expects {shape[channel_axis]} channels on axis {channel_axis} "
                f"({resolved_layout}, shape {shape}); lesionboost feeds RGB (3 channels)."
            )
        size = pick("input_size", input_size, parse_int)
        static = [d for d in spatial if isinstance(d, int)]
        if size is None:
            if len(static) == 2 and static[0] == static[1]:
                size = static[0]
            else:
                raise ValueError(
                    f"Cannot tell the input size of {self._source}: its input shape {shape} "
                    "has no fixed square H and W and its metadata has no "
                    f"{METADATA_KEYS['input_size']}. Pass input_size=..."
                )
        if any(d != size for d in static):
            raise ModelFileError(
                f"{self._source} has a fixed input of {spatial} pixels but input_size={size}; "
                "pass the model's own size."
            )
        if size < 8:
            raise ValueError(f"input_size must be at least 8 pixels, got {size}.")
        self.input_size = int(size)
        self.layout = resolved_layout
        parse_mean = lambda text: _parse_triple(text, METADATA_KEYS["mean"], self._source)  # noqa: E731
        parse_std = lambda text: _parse_triple(text, METADATA_KEYS["std"], self._source)  # noqa: E731
        self.mean = pick("mean", _triple(mean, "mean"), parse_mean) or (0.0, 0.0, 0.0)
        self.std = pick("std", _triple(std, "std"), parse_std) or (1.0, 1.0, 1.0)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}.")
        # (x / 255 - mean) / std == x * scale - offset, one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * np.asarray(self.std))).astype(np.float32)
        self._offset = (np.asarray(self.mean) / np.asarray(self.std)).astype(np.float32)
        batch = shape[0] if isinstance(shape[0], (int, str)) and shape[0] != "" else None
        self._spec = InputSpec(
            name=self.input_name,
            dtype=self.input_dtype,
            layout=self.layout,
            size=self.input_size,
            batch=batch,
            scale=self._scale,
            offset=self._offset,
        )

    def _configure_output(self, output: str | None) -> None:
        names = [o.name for o in self._session.get_outputs()]
        key = METADATA_KEYS["output"]
        chosen = output or self.metadata.get(key) or names[0]
        if chosen not in names:
            raise ModelFileError(
                f"{self._source} has no output {chosen!r} (outputs: {', '.join(names)}); "
                "pass output= one of them."
            )
        self.output = chosen
        self.output_names = names

    # ------------------------------------------------------------------ running
    def _prepare(self, images: np.ndarray) -> np.ndarray:
        """The model's own input for ``images``, computed in numpy (the host reference)."""
        return host_prepare(images, self._spec)

    def _run(self, names: list[str], images: np.ndarray) -> list[np.ndarray]:
        """One session run on a ``uint8`` NHWC batch; the input is prepared where configured."""
        batch = self._prepare(images) if self.preprocessing == "host" else images
        batch = np.ascontiguousarray(batch)
        if not self._io_binding:
            return list(self._session.run(names, {self._feed_name: batch}))
        binding = self._session.io_binding()
        binding.bind_cpu_input(self._feed_name, batch)
        for name in names:
            binding.bind_output(name, self._output_device)
        self._session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def run_outputs(
        self, images: np.ndarray, outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """Run the model on decoded images and return the named outputs (flattened per row).

        Parameters
        ----------
        images : numpy.ndarray of uint8, shape (n, input_size, input_size, 3)
            RGB crops, e.g. from :func:`lesionboost.image.decode_jpeg`.
        outputs : sequence of str, optional
            Output names; default ``[self.output]``.

        Returns
        -------
        list of numpy.ndarray of float32, each of shape (n, d)
        """
        images = np.asarray(images)
        expected = (self.input_size, self.input_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 of shape (n, {self.input_size}, {self.input_size}, 3) for "
                f"this model, got {images.dtype} {images.shape}; decode with "
                f"decode_jpeg(data, {self.input_size})."
            )
        names = list(outputs) if outputs is not None else [self.output]
        if self.fixed_batch is None or images.shape[0] == self.fixed_batch:
            results = self._run(names, images)
            return [np.asarray(r, dtype=np.float32).reshape(images.shape[0], -1) for r in results]
        size = self.fixed_batch
        parts: list[list[np.ndarray]] = []
        for start in range(0, images.shape[0], size):
            piece = images[start : start + size]
            padded = np.zeros((size, *piece.shape[1:]), dtype=np.uint8)
            padded[: len(piece)] = piece
            results = self._run(names, padded)
            parts.append(
                [np.asarray(r, dtype=np.float32).reshape(size, -1)[: len(piece)] for r in results]
            )
        if not parts:  # no images: ask the model once for the output widths
            return [r[:0] for r in self.run_outputs(np.zeros((size, *expected), np.uint8), names)]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(names))]

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """Embed already decoded images, in batches of ``batch_size``.

        Parameters
        ----------
        images : numpy.ndarray of uint8, shape (n, input_size, input_size, 3)

        Returns
        -------
        numpy.ndarray of float32, shape (n, d)
        """
        images = np.asarray(images)
        parts = [
            self.run_outputs(images[i : i + self.batch_size])[0]
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)

    def embed(
        self,
        store: ImageStore | str | os.PathLike[str],
        isic_ids: Sequence[str] | np.ndarray | None = None,
        *,
        outputs: Sequence[str] | None = None,
        return_failed: bool = False,
        progress: bool | None = None,
    ) -> Any:
        """Embed crops of an HDF5 image file, in the order of ``isic_ids``.

        A crop that is missing or cannot be decoded gives a NaN row and is
        flagged, counted in :attr:`stats` and logged; it never stops the run.

        Parameters
        ----------
        store : ImageStore or path
            The Kaggle-layout HDF5 file.
        isic_ids : sequence of str, optional
            Crops to embed; default every crop in the file, in file order.
        outputs : sequence of str, optional
            Several model outputs at once (e.g. ``["embedding", "logit"]``);
            then a list of arrays is returned in place of one array.
        return_failed : bool, default=False
            Also return the boolean mask of rows that gave no image.
        progress : bool, optional
            Show a tqdm bar; default only when stderr is a terminal.

        Returns
        -------
        embeddings : numpy.ndarray of float32, shape (n, d)
            (a list of them when ``outputs`` is given).
        failed : numpy.ndarray of bool, shape (n,)
            Only when ``return_failed`` is True.
        """
        from tqdm.auto import tqdm

        if not isinstance(store, ImageStore):
            store = ImageStore(store)
        ids = list(store.ids()) if isic_ids is None else _as_id_list(isic_ids)
        names = list(outputs) if outputs is not None else [self.output]
        missing_outputs = [n for n in names if n not in self.output_names]
        if missing_outputs:
            raise ValueError(
                f"{self._source} has no output(s) {missing_outputs}; outputs: {self.output_names}."
            )
        n = len(ids)
        results: list[np.ndarray | None] = [None] * len(names)
        failed = np.zeros(n, dtype=bool)
        self.stats = DecodeStats()
        started = time.perf_counter()
        pending: list[Any] = []  # decoded chunks waiting to fill one batch
        pending_rows = 0

        def flush() -> None:
            nonlocal pending, pending_rows
            if not pending:
                return
            start = pending[0].start
            images = (
                np.concatenate([c.images for c in pending])
                if len(pending) > 1
                else pending[0].images
            )
            outs = self.run_outputs(images, names)
            for k, out in enumerate(outs):
                if results[k] is None:
                    results[k] = np.full((n, out.shape[1]), np.nan, dtype=np.float32)
                results[k][start : start + len(out)] = out  # type: ignore[index]
            pending, pending_rows = [], 0

        chunk = min(64, self.batch_size)
        with tqdm(
            total=n, unit="crop", desc="embed", disable=None if progress is None else not progress
        ) as bar:
            for decoded in iter_decoded(
                store,
                ids,
                self.input_size,
                chunk_size=chunk,
                workers=self.workers,
                stats=self.stats,
            ):
                failed[decoded.start : decoded.start + len(decoded.failed)] = decoded.failed
                pending.append(decoded)
                pending_rows += len(decoded.failed)
                if pending_rows >= self.batch_size:
                    flush()
                bar.update(len(decoded.failed))
            flush()
        arrays = [r if r is not None else np.empty((0, 0), dtype=np.float32) for r in results]
        for array in arrays:
            if array.shape[0]:
                array[failed] = np.nan
        elapsed = time.perf_counter() - started
        logger.info(
            "Embedded %d crops in %.1f s (%.0f crops/s) on %s; %s.",
            n,
            elapsed,
            n / elapsed if elapsed > 0 else float("nan"),
            self.device,
            self.stats.summary(),
        )
        value: Any = arrays if outputs is not None else arrays[0]
        return (value, failed) if return_failed else value

    def __repr__(self) -> str:
        return (
            f"OnnxEmbedder({self._source!r}, input_size={self.input_size}, layout="
            f"{self.layout!r}, output={self.output!r}, device={self.device!r}, "
            f"precision={self.precision!r})"
        )


def _as_id_list(isic_ids: Any) -> list[str]:
    if hasattr(isic_ids, "to_list"):
        values = isic_ids.to_list()
    else:
        values = list(np.asarray(isic_ids, dtype=object).ravel())
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise ValueError(f"isic_ids must be strings like 'ISIC_0015657'; got {bad[:5]!r}.")
    return values
