"""Random-access datasets on the host: what the engine trains on, and how to bring your own.

The source protocol
-------------------
Everything the engine needs of a dataset (Algorithm 1 reads the same samples for the
sub-networks and for the global network, so one source serves both):

* ``len(source)``: the number of samples;
* ``source.take(indices) -> (images, targets)`` for any integer index array (the batch order is
  chosen by :mod:`dcnn_dd.data.pipeline`, never by the source): images ``(n, H, W, C)`` uint8 or
  float32, targets int32 labels ``(n,)`` or float32 ``(n, *target_shape)``;
* ``source.image_shape``: ``(H, W, C)``, any channel count C;
* ``source.num_classes``: the number of classes (int), or None for regression targets;
* ``source.target_shape``: ``()`` for integer class labels, ``(C,)`` for multi-label 0/1 vectors
  (``num_classes`` = C), any shape for regression;
* ``source.pixel_scale``: what the images are divided by before the mean is subtracted
  (:func:`dcnn_dd.data.augment.normalize`): 255.0 for uint8 images, 1.0 for float images;
* ``source.name`` (a label), ``source.subset(n_or_indices)`` (the first n samples, or those
  indices, as a source of the same kind);
* ``source.fingerprint() -> str``: a cheap content hash (:func:`content_fingerprint`,
  :func:`sampled_fingerprint`); the run directory records it and a resume on other data is
  refused (:func:`dcnn_dd.train.checkpoint.check_data`).

:func:`check_source` checks a source against this protocol and :func:`check_splits` that a
train, test (and validation) source fit together (image shape, classes, target shape, pixel
scale); :func:`holdout` holds out a validation split; :func:`describe` is the record
``<run_dir>/data.json`` keeps.

Sources
-------
* :class:`ArraySource` - arrays in memory; :func:`from_arrays` makes one from NumPy or JAX
  arrays (uint8 or float images, any channel count; class labels, multi-label vectors or
  regression targets).  Built on it: Fashion-MNIST from its IDX files
  (:func:`load_fashion_mnist`, offline, the package's default dataset), scikit-learn's 8x8
  digits (:func:`load_digits`, bundled with scikit-learn: the smallest end-to-end check),
  ``synthetic_cifar`` (:func:`load_synthetic`): random images of CIFAR-10's shape and size, for
  timing where no dataset is at hand (nothing to learn), and :func:`image_folder` (one
  sub-folder of PNG/JPEG files per class, decoded when it is made).
* :class:`TFDSSource` - a prepared TensorFlow-Datasets ``array_record`` dataset, read with
  ``tfds.data_source`` (random access, no TensorFlow needed to *read*; preparing once needs it,
  see :mod:`dcnn_dd.data.prepare`).  CIFAR-10/100 (Section 3.1.1), Food-101 (Section 3.1.2),
  Cats-vs-Dogs (Section 3.1.3), Fashion-MNIST, or any other TFDS dataset with its image and
  label keys and split names given (:func:`tfds_source`).

Names
-----
:func:`load` (what ``Config.dataset`` names) dispatches through a registry:
:func:`register_dataset` adds ``name -> factory(split, **kw)``, and the built-in names
(``fashion_mnist_idx``, ``digits``, ``synthetic_cifar`` and the TFDS names of
:data:`TFDS_NAMES`) are registered the same way.  A name that is not registered is tried as a
TFDS dataset.  A dataset that is not on this machine raises :class:`DatasetNotFoundError`, whose
message is the command that fixes it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gzip
import hashlib
import inspect
import os
import pathlib
import zlib
from collections.abc import Sequence

import numpy as np

FASHION_MNIST_ENV = "DCNN_DD_DATA"
DEFAULT_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist/tree/master/data/fashion"

# TFDS datasets known to work (image key 'image', label key 'label').  Any other TFDS image
# classification dataset with those keys works as well.
TFDS_NAMES = ("cifar10", "cifar100", "food101", "cats_vs_dogs", "fashion_mnist")
# 'train' / 'test' for datasets whose TFDS splits are named otherwise.  Food-101 has a 'validation'
# split of 25,250 images (the paper's test set); Cats-vs-Dogs has one 'train' split of 23,262
# images, of which we hold out the last 20% (our choice: the paper does not publish its split).
TFDS_SPLITS = {
    "food101": {"train": "train", "test": "validation"},
    "cats_vs_dogs": {"train": "train[:80%]", "test": "train[80%:]"},
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on this machine.  The message says how to get it (one command)."""


# ---------------------------------------------------------------------------- fingerprints
FULL_HASH_BYTES = 64 << 20  # arrays up to this size are hashed in full
SAMPLE_ROWS = 1024  # otherwise this many evenly spaced images (and every target)


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64)) if n else np.zeros(0, np.int64)


def content_fingerprint(images, targets, *, meta=()) -> str:
    """A hash of ``images`` and ``targets`` (dtypes, shapes and bytes; ``meta``: more values that
    change the data's meaning, e.g. class names).  Images of at most :data:`FULL_HASH_BYTES` are
    hashed in full, larger ones through :data:`SAMPLE_ROWS` evenly spaced samples; the targets
    always in full.  32 hex digits."""
    images, targets = np.ascontiguousarray(images), np.ascontiguousarray(targets)
    h = hashlib.sha256()
    h.update(repr((images.dtype.str, images.shape, targets.dtype.str, targets.shape, tuple(meta))).encode())
    if images.nbytes > FULL_HASH_BYTES:
        images = np.ascontiguousarray(images[_evenly_spaced(images.shape[0], SAMPLE_ROWS)])
    h.update(images.tobytes())
    h.update(targets.tobytes())
    return h.hexdigest()[:32]


def sampled_fingerprint(source, rows: int = 32, *, meta=()) -> str:
    """A hash of ``source``'s length, shapes and ``rows`` evenly spaced samples (read with
    ``take``): for sources too large or too slow to read in full (TFDS).  A source of your own can
    use it as its ``fingerprint()``."""
    n = len(source)
    images, targets = source.take(_evenly_spaced(n, rows))
    return content_fingerprint(images, targets, meta=(n, tuple(source.image_shape), *meta))


# ---------------------------------------------------------------------------- ArraySource
@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """A dataset held in memory: ``images`` (N, H, W, C), uint8 (0..255) or float (kept as float32,
    e.g. already scaled to [0, 1]), any channel count C, and ``labels``, one of

    * int class labels (N,) in ``0..num_classes - 1`` (kept as int32);
    * multi-label 0/1 vectors (N, C) (int, bool or float; kept as float32), ``num_classes`` = C
      (None: taken from the shape);
    * float regression targets (N, ...) of any shape, ``num_classes`` None (kept as float32).

    ``class_names``: optional names of the classes, in label order.  A bad array (wrong rank or
    dtype, non-finite values, labels out of range) is a one-line ``ValueError``; for the
    conversions of arrays as they come (a missing channel axis, inferred class counts) use
    :func:`from_arrays`."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int | None
    name: str
    class_names: tuple | None = None

    def __post_init__(self):
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        name = self.name
        if images.ndim != 4:
            raise ValueError(f"{name}: images must be (N, H, W, C), got shape {images.shape}")
        if np.issubdtype(images.dtype, np.floating):
            images = images.astype(np.float32, copy=False)
            if not np.isfinite(images).all():
                raise ValueError(f"{name}: the images hold NaN or Inf values")
        elif images.dtype != np.uint8:
            raise ValueError(f"{name}: images must be uint8 (0..255) or float, got {images.dtype} "
                             "(convert with images.astype(np.uint8) or .astype(np.float32))")
        if labels.ndim == 0 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"{name}: {images.shape[0]} images but labels of shape {labels.shape}")
        labels, num_classes = _check_labels(labels, self.num_classes, name)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "num_classes", num_classes)
        if self.class_names is not None:
            names = tuple(str(c) for c in self.class_names)
            if num_classes is None or len(names) != num_classes:
                raise ValueError(f"{name}: {len(names)} class names for {num_classes} classes")
            object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def target_shape(self) -> tuple:
        """() for class labels, (C,) for multi-label vectors, the targets' shape for regression."""
        return tuple(int(s) for s in self.labels.shape[1:])

    @property
    def pixel_scale(self) -> float:
        """255.0 for uint8 images, 1.0 for float images (:func:`dcnn_dd.data.augment.normalize`)."""
        return 255.0 if self.images.dtype == np.uint8 else 1.0

    def fingerprint(self) -> str:
        """:func:`content_fingerprint` of the images and labels (and the class names), computed once."""
        if "_fingerprint" not in self.__dict__:
            meta = (self.num_classes, self.class_names)
            self.__dict__["_fingerprint"] = content_fingerprint(self.images, self.labels, meta=meta)
        return self.__dict__["_fingerprint"]

    def take(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, H, W, C), labels (n, *target_shape)) of the samples ``indices``."""
        idx = _check_indices(indices, len(self), self.name)
        return self.images[idx], self.labels[idx]

    def subset(self, n_or_indices) -> ArraySource:
        """The first ``n`` samples (an int) or the samples ``indices`` (an int array), in that order."""
        idx = _subset_indices(n_or_indices, len(self), self.name)
        return ArraySource(self.images[idx], self.labels[idx], self.num_classes, self.name, self.class_names)

    def __repr__(self) -> str:
        return (f"ArraySource({self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
                f"{self.images.dtype}, num_classes={self.num_classes}, target_shape={self.target_shape})")


def _check_labels(labels: np.ndarray, num_classes, name: str) -> tuple[np.ndarray, int | None]:
    """(labels as int32 or float32, num_classes) or a one-line ValueError (see :class:`ArraySource`)."""
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
                                    or num_classes < 1):
        raise ValueError(f"{name}: num_classes={num_classes!r} must be a positive integer or None")
    num_classes = None if num_classes is None else int(num_classes)
    if labels.dtype == bool and labels.ndim == 1:  # two classes
        labels = labels.astype(np.int32)
    integer = np.issubdtype(labels.dtype, np.integer)
    if integer and labels.ndim == 1:  # class labels
        if num_classes is None:
            raise ValueError(f"{name}: integer class labels need num_classes (or use dcnn_dd.data.from_arrays, "
                             "which infers it)")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name}: labels span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1} "
                             f"(num_classes={num_classes})")
        return labels.astype(np.int32, copy=False), num_classes
    if labels.dtype == bool or integer or (num_classes is not None and np.issubdtype(labels.dtype, np.floating)):
        if labels.ndim != 2:  # multi-label 0/1 vectors
            raise ValueError(f"{name}: multi-label targets must be (N, num_classes) 0/1 vectors, got shape "
                             f"{labels.shape} of {labels.dtype} (class labels are integers: labels.astype(int); "
                             "regression targets are floats without num_classes)")
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(f"{name}: multi-label targets of {labels.shape[1]} classes, num_classes={num_classes}")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{name}: multi-label targets must be 0 or 1, got values "
                             f"{np.unique(labels[~np.isin(labels, (0, 1))])[:5].tolist()}")
        return labels.astype(np.float32), int(labels.shape[1])
    if np.issubdtype(labels.dtype, np.floating):  # regression targets
        labels = labels.astype(np.float32, copy=False)
        if not np.isfinite(labels).all():
            raise ValueError(f"{name}: the regression targets hold NaN or Inf values")
        return labels, None
    raise ValueError(f"{name}: labels must be integer class labels, 0/1 multi-label vectors or float regression "
                     f"targets, got {labels.dtype}")


def from_arrays(images, labels, *, num_classes: int | None = None, name: str = "arrays") -> ArraySource:
    """A source from in-memory NumPy or JAX arrays (an :class:`ArraySource`).

    ``images``: (N, H, W, C), any channel count, or (N, H, W), which gets a channel axis of 1
    (grayscale); any other rank is an error, and so is an array that looks channels-first
    ((N, C, H, W) with C in 1, 3, 4: ``np.moveaxis(images, 1, -1)`` fixes it).  uint8 images are
    kept (normalised as ``x / 255 - mean``), float images of any precision become float32
    (normalised as ``x - mean``: scale them as you like, e.g. to [0, 1]); other dtypes are an
    error (convert them to one of the two).

    ``labels``, by dtype and shape:

    * integers (N,) (or bools: two classes): class labels.  ``num_classes`` None:
      ``labels.max() + 1``, inferred from these arrays: give it when a split may lack the last
      class (train and test would disagree);
    * integers or bools (N, C): multi-label 0/1 vectors, ``num_classes`` = C;
    * floats: regression targets of any shape (N, ...), ``num_classes`` None; with
      ``num_classes`` given, (N, num_classes) multi-label 0/1 vectors instead.

    ``name`` labels the source in messages and in the run directory's ``data.json``."""
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.dtype == bool and labels.ndim == 1:  # two classes
        labels = labels.astype(np.int32)
    if images.ndim == 3:
        images = images[..., None]
    elif images.ndim != 4:
        raise ValueError(f"{name}: images must be (N, H, W, C) or (N, H, W), got shape {images.shape}")
    if images.shape[1] in (1, 3, 4) and images.shape[3] > 4:
        raise ValueError(f"{name}: images of shape {images.shape} look channels-first (N, C, H, W); the engine takes "
                         "(N, H, W, C): pass np.moveaxis(images, 1, -1)")
    if num_classes is None and np.issubdtype(labels.dtype, np.integer) and labels.ndim == 1 and labels.size:
        if labels.min() < 0:
            raise ValueError(f"{name}: labels span {labels.min()}..{labels.max()}: class labels must be >= 0")
        num_classes = int(labels.max()) + 1
    return ArraySource(images, labels, num_classes, name)


def _check_indices(indices, n: int, name: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.size == 0:
        return idx.astype(np.int64).reshape(idx.shape)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name}: indices must be integers, got dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"{name}: indices span {idx.min()}..{idx.max()}, the dataset has {n} samples")
    return idx


def _subset_indices(n_or_indices, n: int, name: str) -> np.ndarray:
    if isinstance(n_or_indices, (int, np.integer)):
        k = int(n_or_indices)
        if not 0 < k <= n:
            raise ValueError(f"{name}: subset({k}) needs 1 <= n <= {n} (the dataset size)")
        return np.arange(k)
    return _check_indices(n_or_indices, n, name).reshape(-1)


# ---------------------------------------------------------------------------- IDX files
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format), gzipped or plain.

    Layout: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D
    float32, 0x0E float64), the number of dimensions, one big-endian uint32 per dimension, then
    the data in big-endian C order.  A file whose header or length does not match raises
    ``ValueError``.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        if gzipped:
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # truncated or corrupt gzip stream
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX header (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex()} does not start with 0000)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x} (known: "
                         + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES) + ")")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {what}: dims {dims} of {dtype.name} need {expected} bytes, "
                         f"the file has {len(raw)}")
    data = np.frombuffer(raw, dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _idx_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem + ".gz", stem):
        p = directory / name
        if p.is_file():
            return p
    return None


def _missing_files(directory: pathlib.Path) -> list[str]:
    stems = [s for pair in FASHION_MNIST_FILES.values() for s in pair]
    return [f"{s}[.gz]" for s in stems if _idx_file(directory, s) is None]


def _check_dir(directory: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """(the directory holding the 4 files, or None; why not).  ``directory`` or its
    ``fashion-mnist`` subdirectory."""
    if not directory.is_dir():
        return None, "does not exist" if not directory.exists() else "is not a directory"
    reasons = []
    for d in (directory, directory / "fashion-mnist"):
        if d.is_dir():
            missing = _missing_files(d)
            if not missing:
                return d, ""
            reasons.append(f"{d}: missing {', '.join(missing)}")
    return None, "; ".join(reasons)


def _not_found_message(searched: list[tuple[str, str]]) -> str:
    lines = ["Fashion-MNIST IDX files not found. Searched:"]
    lines += [f"  - {where}: {why}" for where, why in searched]
    lines += [
        "Fix it with one of:",
        "  sudo apt-get install dataset-fashion-mnist     # Debian/Ubuntu: installs them into "
        f"{DEFAULT_FASHION_MNIST_DIR}",
        "  or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        f"t10k-labels-idx1-ubyte.gz ({FASHION_MNIST_URL}) into a directory DIR, then",
        f"     export {FASHION_MNIST_ENV}=DIR",
    ]
    return "\n".join(lines)


def find_fashion_mnist(path=None) -> pathlib.Path:
    """The directory holding the four Fashion-MNIST IDX files (``.gz`` or plain).

    Search order: ``path`` if given (it must hold the files: an explicit location is never
    silently replaced by another one), else ``$DCNN_DD_DATA``, else ``/usr/share/datasets/
    fashion-mnist`` (Debian's ``dataset-fashion-mnist``).  Each location may be the directory
    itself or a directory with a ``fashion-mnist`` subdirectory.  Raises
    :class:`DatasetNotFoundError` listing the places searched and the fixes.
    """
    if path is not None:
        candidates = [(pathlib.Path(path).expanduser(), f"{path} (the path given)")]
    else:
        candidates = []
        env = os.environ.get(FASHION_MNIST_ENV)
        if env:
            candidates.append((pathlib.Path(env).expanduser(), f"{env} (${FASHION_MNIST_ENV})"))
        candidates.append((pathlib.Path(DEFAULT_FASHION_MNIST_DIR), f"{DEFAULT_FASHION_MNIST_DIR} (the default)"))
    searched = []
    for directory, where in candidates:
        found, why = _check_dir(directory)
        if found is not None:
            return found
        searched.append((where, why))
    if path is None and not os.environ.get(FASHION_MNIST_ENV):
        searched.insert(0, (f"${FASHION_MNIST_ENV}", "not set"))
    raise DatasetNotFoundError(_not_found_message(searched))


def load_fashion_mnist(split: str = "train", path=None) -> ArraySource:
    """Fashion-MNIST from its IDX files: images (N, 28, 28, 1) uint8, 10 classes; N = 60,000
    ('train') or 10,000 ('test').  See :func:`find_fashion_mnist` for where it looks."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split={split!r}: Fashion-MNIST has the splits 'train' and 'test'")
    directory = find_fashion_mnist(path)
    img_stem, lab_stem = FASHION_MNIST_FILES[split]
    images, labels = read_idx(_idx_file(directory, img_stem)), read_idx(_idx_file(directory, lab_stem))
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{directory}: {img_stem} is {images.dtype}{images.shape} and {lab_stem} {labels.dtype}"
                         f"{labels.shape}; expected uint8 (N, 28, 28) images and (N,) labels")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split")
    return ArraySource(images[..., None], labels.astype(np.int32), 10, "fashion_mnist")


def load_digits(split: str = "train", test_fraction: float = 0.25, seed: int = 0) -> ArraySource:
    """scikit-learn's 8x8 handwritten digits (1,797 images, bundled, no download), scaled from
    0..16 to uint8 0..255: images (N, 8, 8, 1), 10 classes.  The split is a fixed permutation
    (``seed``): the last ``round(test_fraction * 1797)`` samples of it are 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: the digits dataset has the splits 'train' and 'test'")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError("the digits dataset comes with scikit-learn: pip install scikit-learn "
                          "(or pip install 'dcnn-dd[test]')") from None
    d = sk_load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    idx = perm[len(labels) - n_test:] if split == "test" else perm[: len(labels) - n_test]
    return ArraySource(images[idx], labels[idx], 10, "digits")


# name -> (image shape (H, W, C), classes, {split: samples}) of the random timing datasets
SYNTHETIC = {"synthetic_cifar": ((32, 32, 3), 10, {"train": 50000, "test": 10000})}


@functools.lru_cache(maxsize=2)
def load_synthetic(name: str = "synthetic_cifar", split: str = "train") -> ArraySource:
    """Random uint8 images and labels with the shape, classes and split sizes of a real dataset
    (:data:`SYNTHETIC`; ``synthetic_cifar``: CIFAR-10's 50,000 / 10,000 images of 32x32x3, 10
    classes), so that a timing has the real steps per epoch.  For measuring speed only: there is
    nothing to learn.  The same every time (seeded by the split)."""
    if name not in SYNTHETIC:
        raise ValueError(f"synthetic dataset {name!r}: choose one of {sorted(SYNTHETIC)}")
    shape, classes, sizes = SYNTHETIC[name]
    if split not in sizes:
        raise ValueError(f"split={split!r}: {name} has the splits {sorted(sizes)}")
    rng = np.random.default_rng(zlib.crc32(f"{name}/{split}".encode()))
    images = rng.integers(0, 256, size=(sizes[split], *shape), dtype=np.uint8)
    return ArraySource(images, rng.integers(0, classes, sizes[split]).astype(np.int32), classes, name)


# ---------------------------------------------------------------------------- image folders
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "test", "val", "validation")
CHANNELS = {"rgb": "RGB", "gray": "L"}


def _class_folders(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def image_folder(path, split: str | None = None, *, image_size=None, channels: str | None = None,
                 test_fraction: float = 0.2, seed: int = 0, name: str | None = None) -> ArraySource:
    """A labelled image folder as an :class:`ArraySource` of uint8 images: one sub-folder per class,
    ``path/<class>/<image>`` (PNG, JPEG, or another format of :data:`IMAGE_EXTENSIONS`; other
    files and hidden entries are ignored).  Class names sorted give the labels 0, 1, ...; the
    source's ``class_names`` keeps them.

    Splits, by layout:

    * ``path/train/<class>/...`` and ``path/test/<class>/...`` (any of :data:`SPLIT_FOLDERS`): the
      folder ``split`` names (the classes are those of all split folders together, so train and
      test agree on the labels even where a split lacks a class);
    * ``path/<class>/...``: ``split`` None takes every image; ``'train'`` / ``'test'`` a fixed
      split, the last ``round(test_fraction * N)`` images of a permutation seeded with ``seed``
      being the test set.

    ``image_size=(H, W)``: every image is resized (PIL bilinear); None: they must all have one size.
    ``channels``: ``'rgb'`` (3), ``'gray'`` (1), or None: grayscale if every image is, else RGB.

    The images are decoded when the source is made and held in memory (N x H x W x C bytes): for
    small folders (thousands of images); larger data belongs in TFDS or in arrays
    (:func:`from_arrays`).  ``functools.partial(image_folder, path, image_size=...)`` is a factory
    for :func:`register_dataset`.  An empty folder, a folder without class sub-folders, an empty
    class folder, or an image that cannot be read is a one-line error."""
    from PIL import Image

    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist" if not root.exists()
                                   else f"image folder {root} is not a directory")
    if channels not in (None, *CHANNELS):
        raise ValueError(f"channels={channels!r}: choose 'rgb', 'gray' or None (grayscale if every image is)")
    splits = [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if splits:
        if split is None or not (root / split).is_dir():
            raise ValueError(f"image folder {root} has the split folders {[p.name for p in splits]}: pass split= one "
                             "of them")
        classes = sorted({c.name for d in splits for c in _class_folders(d)})
        folder = root / split
        files = [(f, i) for i, c in enumerate(classes) if (folder / c).is_dir() for f in _image_files(folder / c)]
        empty = [c for c in classes if (folder / c).is_dir() and not _image_files(folder / c)]
    else:
        folder = root
        classes = [c.name for c in _class_folders(root)]
        files = [(f, i) for i, c in enumerate(classes) for f in _image_files(root / c)]
        empty = [c for c in classes if not _image_files(root / c)]
    if not classes:
        raise ValueError(f"image folder {folder} has no class sub-folders: put the images of each class in "
                         f"{folder}/<class name>/ (PNG or JPEG)")
    if empty:
        raise ValueError(f"image folder {folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folder(s) "
                         f"{', '.join(empty)}")
    if not files:
        raise ValueError(f"image folder {folder} has no class sub-folders with images of the classes "
                         f"{', '.join(classes)}")
    if not splits and split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: an image folder without split folders has the splits 'train' and "
                             "'test' (test_fraction of the images) or None (all)")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
        perm = np.random.default_rng(seed).permutation(len(files))
        n_test = int(round(test_fraction * len(files)))
        if not 0 < n_test < len(files):
            raise ValueError(f"image folder {root}: test_fraction={test_fraction} of {len(files)} images leaves "
                             f"{n_test} test and {len(files) - n_test} training images; both need at least one")
        keep = np.sort(perm[len(files) - n_test:] if split == "test" else perm[: len(files) - n_test])
        files = [files[i] for i in keep]
    opened = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                opened.append(im.mode)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
            raise ValueError(f"{f}: not a readable image ({type(e).__name__}: {e})") from None
    mode = CHANNELS[channels] if channels else ("L" if all(m in ("1", "L", "LA") for m in opened) else "RGB")
    size = None if image_size is None else (int(image_size[1]), int(image_size[0]))  # PIL: (W, H)
    images = []
    for f, _ in files:
        with Image.open(f) as im:
            im = im.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, Image.BILINEAR)
            images.append(np.asarray(im, np.uint8))
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(f"image folder {folder}: images of different sizes {[s[:2] for s in shapes[:3]]}; pass "
                         "image_size=(H, W) to resize them")
    stacked = np.stack(images)
    if stacked.ndim == 3:
        stacked = stacked[..., None]
    labels = np.asarray([lab for _, lab in files], np.int32)
    label = name or (root.name if split is None else f"{root.name}/{split}")
    return ArraySource(stacked, labels, len(classes), label, tuple(classes))


# ---------------------------------------------------------------------------- TFDS
def prepare_command(name: str, data_dir=None) -> str:
    """The one command that prepares TFDS dataset ``name`` for :class:`TFDSSource`."""
    cmd = f"pip install 'dcnn-dd[prepare]' && python -m dcnn_dd.data.prepare {name}"
    return cmd + (f" --data-dir {data_dir}" if data_dir is not None else "")


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(h, w, C) uint8 -> (H, W, C) uint8 with PIL's bilinear filter; C = 1 stays one channel."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image
    if image.shape[-1] == 1:
        out = np.asarray(Image.fromarray(image[..., 0], mode="L").resize((w, h), Image.BILINEAR))
        return out[..., None]
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


class TFDSSource:
    """Random access to a prepared TFDS dataset (``tfds.data_source``, ``array_record`` files).

    ``split``: 'train' / 'test', mapped to the dataset's own split names by ``split_names``
    (default: :data:`TFDS_SPLITS`), or any TFDS split string ('train[:10%]').  ``image_key`` /
    ``label_key``: the features that hold the image and the target.  A ``ClassLabel`` target gives
    int class labels and the dataset's class count; any other (a fixed-shape numeric tensor) float
    targets: regression (``num_classes`` None), or multi-label 0/1 vectors with ``num_classes``
    given.  Images are uint8 (TFDS ``Image``) or float tensors.  ``image_size=(H, W)`` resizes
    every decoded uint8 image with PIL bilinear (needed for variable-size datasets: Food-101,
    Cats-vs-Dogs); grayscale images keep their single channel.  ``reader``: any sequence of
    ``{image_key: ..., label_key: ...}`` dicts to use instead of opening the dataset (tests).
    Decoding (PNG/JPEG, on the host) happens in :meth:`take`, split over ``num_workers`` threads
    (PIL decodes and resizes in C, largely without the GIL; the array_record reader is
    thread-safe).  :func:`tfds_source` is the same with its keywords documented for the engine.
    """

    def __init__(self, name: str, split: str = "train", *, data_dir=None, image_size=None, reader=None,
                 num_classes: int | None = None, image_key: str = "image", label_key: str = "label",
                 split_names: dict | None = None, num_workers: int | None = None, _index=None, _pool=None):
        self.name, self.split, self.data_dir = name, split, data_dir
        self.split_names = dict(TFDS_SPLITS.get(name, {}) if split_names is None else split_names)
        self.tfds_split = self.split_names.get(split, split)
        self.num_workers = int(num_workers or min(8, os.cpu_count() or 1))
        self._pool = _pool
        self.image_key, self.label_key = image_key, label_key
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self._feature_shape = self._image_dtype = self._target_shape = None
        if reader is None:
            reader, classes, self._feature_shape, self._image_dtype, self._target_shape = _open_tfds(
                name, self.tfds_split, data_dir, image_key, label_key)
            num_classes = classes if num_classes is None else num_classes
        self.reader = reader
        self.num_classes = None if num_classes is None else int(num_classes)
        self._index = None if _index is None else np.asarray(_index, np.int64)
        self._shape_cache = None

    def __len__(self) -> int:
        return len(self.reader) if self._index is None else int(self._index.size)

    @property
    def _class_labels(self) -> bool:
        return self.num_classes is not None and self.target_shape == ()

    def _decode(self, i: int) -> tuple[np.ndarray, object]:
        ex = self.reader[int(i)]
        img = np.asarray(ex[self.image_key])
        if np.issubdtype(img.dtype, np.floating):
            img = img.astype(np.float32, copy=False)
        elif img.dtype != np.uint8:
            raise ValueError(f"{self.name}: image {i} is {img.dtype}, expected uint8 or float")
        if img.ndim == 2:
            img = img[..., None]
        if self.image_size is not None:
            if img.dtype != np.uint8 and img.shape[:2] != self.image_size:
                raise ValueError(f"{self.name}: image_size resizes uint8 images only; image {i} is {img.dtype} "
                                 f"{img.shape}")
            img = resize_image(img, self.image_size)
        return img, ex[self.label_key]

    def _targets(self, labels: list, shape: tuple) -> np.ndarray:
        if self._class_labels:
            return np.asarray([int(lab) for lab in labels], np.int32).reshape(shape)
        return np.asarray(labels, np.float32).reshape(*shape, *self.target_shape)

    def take(self, indices) -> tuple[np.ndarray, np.ndarray]:
        idx = _check_indices(indices, len(self), self.name)
        rows = idx.reshape(-1) if self._index is None else self._index[idx.reshape(-1)]
        decoded = self._decode_all(rows)
        if not decoded:
            dtype = np.uint8 if self.pixel_scale == 255.0 else np.float32
            return np.zeros((*idx.shape, *self.image_shape), dtype), self._targets([], idx.shape)
        shapes = {im.shape for im, _ in decoded}
        if len(shapes) > 1:
            raise ValueError(f"{self.name}: images of different sizes {sorted(shapes)[:4]} in one batch; "
                             "pass image_size=(H, W) to resize them")
        images = np.stack([im for im, _ in decoded]).reshape(*idx.shape, *decoded[0][0].shape)
        return images, self._targets([lab for _, lab in decoded], idx.shape)

    def _decode_all(self, rows) -> list:
        workers = min(self.num_workers, len(rows))
        if workers <= 1:
            return [self._decode(i) for i in rows]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_workers, "dcnn_dd-decode")
        chunks = np.array_split(np.asarray(rows), workers)
        parts = self._pool.map(lambda chunk: [self._decode(i) for i in chunk], chunks)
        return [d for part in parts for d in part]

    def _first(self) -> tuple[np.ndarray, object]:
        return self._decode(0 if self._index is None else self._index[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C): ``image_size`` if given, else the dataset's fixed image shape (for a
        variable-size dataset without ``image_size``: ValueError)."""
        if self._shape_cache is None:
            fs = self._feature_shape
            if fs is not None and None not in fs:
                shape = fs if self.image_size is None else (*self.image_size, fs[-1])
            elif fs is not None and self.image_size is None:
                raise ValueError(f"{self.name} has images of variable size {fs}; pass image_size=(H, W)")
            else:  # a reader without feature info, or variable-size images resized: look at one
                shape = self._first()[0].shape
            self._shape_cache = tuple(int(s) for s in shape)
        return self._shape_cache

    @property
    def target_shape(self) -> tuple:
        """() for class labels; the label feature's shape otherwise (multi-label, regression)."""
        if self._target_shape is None:
            self._target_shape = tuple(int(s) for s in np.shape(self._first()[1]))
        return self._target_shape

    @property
    def pixel_scale(self) -> float:
        """255.0 for uint8 images, 1.0 for float images."""
        if self._image_dtype is None:
            self._image_dtype = self._first()[0].dtype
        return 255.0 if np.dtype(self._image_dtype) == np.uint8 else 1.0

    def fingerprint(self) -> str:
        """:func:`sampled_fingerprint` of 32 decoded samples, with the dataset's name, split, keys,
        image size, classes and (for a subset) its indices: cheap for any size."""
        index = None if self._index is None else hashlib.sha256(self._index.tobytes()).hexdigest()
        return sampled_fingerprint(self, meta=(self.name, self.tfds_split, self.image_key, self.label_key,
                                               self.image_size, self.num_classes, index))

    def subset(self, n_or_indices) -> TFDSSource:
        idx = _subset_indices(n_or_indices, len(self), self.name)
        rows = idx if self._index is None else self._index[idx]
        sub = TFDSSource(self.name, self.split, data_dir=self.data_dir, image_size=self.image_size, reader=self.reader,
                         num_classes=self.num_classes, image_key=self.image_key, label_key=self.label_key,
                         split_names=self.split_names, num_workers=self.num_workers, _index=rows, _pool=self._pool)
        sub._feature_shape, sub._image_dtype, sub._target_shape = (self._feature_shape, self._image_dtype,
                                                                    self._target_shape)
        return sub

    def __repr__(self) -> str:
        return (f"TFDSSource({self.name!r}, split={self.tfds_split!r}, n={len(self)}, image_size={self.image_size}, "
                f"num_classes={self.num_classes})")


def tfds_source(name: str, split: str = "train", *, image_key: str = "image", label_key: str = "label",
                split_names: dict | None = None, data_dir=None, image_size=None, num_classes: int | None = None,
                num_workers: int | None = None) -> TFDSSource:
    """Any prepared TFDS dataset as a source (a :class:`TFDSSource`).

    ``split``: the engine's ``'train'`` / ``'test'``, mapped by ``split_names`` to the dataset's own
    split strings (e.g. ``{"train": "train[:80%]", "test": "train[80%:]"}`` for a dataset with one
    split, ``{"test": "validation"}``; a split not in it is used as it is; default: this package's
    :data:`TFDS_SPLITS`).  ``image_key`` / ``label_key``: the features holding the image and the
    target (e.g. ``label_key="label_category"`` for ``smallnorb``).  ``image_size=(H, W)``:
    resize (variable-size datasets need it).  ``data_dir``: TFDS's data directory.

    Directly: ``run_algorithm1(config, run_dir, train=tfds_source("smallnorb", "train",
    label_key="label_category"), test=tfds_source("smallnorb", "test", label_key="label_category"))``;
    by name: ``register_dataset("norb", functools.partial(tfds_source, "smallnorb",
    label_key="label_category"))`` and ``Config(dataset="norb")``."""
    return TFDSSource(name, split, data_dir=data_dir, image_size=image_size, num_classes=num_classes,
                      image_key=image_key, label_key=label_key, split_names=split_names, num_workers=num_workers)


def _open_tfds(name, tfds_split, data_dir, image_key, label_key):
    """(reader, num_classes or None, feature image shape, image dtype, target shape) of a prepared
    TFDS dataset's split ``tfds_split``."""
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import registered
    except ImportError:
        raise ImportError(f"reading TFDS dataset {name!r} needs tensorflow-datasets (a dependency of dcnn-dd): "
                          "pip install tensorflow-datasets") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except registered.DatasetNotFoundError:
        raise ValueError(f"dataset {name!r} is neither registered ({', '.join(registered_datasets())}; "
                         "dcnn_dd.data.register_dataset adds one) nor a TFDS dataset name") from None
    features = builder.info.features
    if image_key not in features or label_key not in features:
        raise ValueError(f"TFDS dataset {name!r} has features {list(features)}; "
                         f"expected {image_key!r} and {label_key!r} (pass image_key= / label_key=)")
    label = features[label_key]
    target_shape = getattr(label, "shape", None)
    if not isinstance(target_shape, tuple) or None in target_shape:
        raise ValueError(f"TFDS dataset {name!r}: the feature {label_key!r} ({type(label).__name__}) is not a class "
                         "label or a fixed-shape tensor; pass label_key= of one")
    try:
        reader = builder.as_data_source(split=tfds_split)
    except (NotImplementedError, FileNotFoundError) as e:
        where = builder.data_dir
        if not builder.is_prepared():
            raise DatasetNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {where}. Prepare it once (downloads it; needs "
                f"TensorFlow):\n    {prepare_command(name, data_dir)}") from None
        raise DatasetNotFoundError(
            f"TFDS dataset {name!r} in {where} is not in the array_record format needed for random access "
            f"({e.__class__.__name__}: {str(e).splitlines()[0]}). Prepare it again in another data directory:\n"
            f"    {prepare_command(name, data_dir or '~/tensorflow_datasets_array_record')}") from None
    image = features[image_key]
    dtype = getattr(image, "np_dtype", None)
    return (reader, getattr(label, "num_classes", None), tuple(image.shape), None if dtype is None else np.dtype(dtype),
            tuple(int(d) for d in target_shape))


# ---------------------------------------------------------------------------- names
DATASETS: dict = {}  # name -> factory(split, **kw) -> source (register_dataset)


def register_dataset(name: str, factory) -> None:
    """Make a dataset of your own available by name, to ``Config(dataset=name)``, :func:`load` and
    the experiments' ``--set dataset=name`` (register it in the script that runs them).

    ``factory(split, **kw)`` returns a source (see the protocol in this module's docstring, e.g.
    :func:`from_arrays`, :func:`image_folder`, :func:`tfds_source`) for ``split`` ``'train'`` or
    ``'test'``; ``kw`` holds what the caller set of ``path`` (``--data``), ``data_dir``
    (``--data-dir``) and ``image_size`` (``Config.image_size``), as far as the factory's signature
    takes them: ``def factory(split): ...`` is a factory.  E.g. ``register_dataset("flowers",
    functools.partial(image_folder, "~/flowers", image_size=(64, 64)))``.  A built-in name cannot
    be replaced; registering a name of your own again replaces it (a notebook cell run twice).
    The run directory records the data's fingerprint, so a name that later gives other data is
    refused on resume."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name {name!r}: give a non-empty string")
    if not callable(factory):
        raise TypeError(f"register_dataset({name!r}, ...): the factory must be callable, got {type(factory).__name__}")
    if name in BUILTIN_DATASETS and DATASETS.get(name) is not factory:
        raise ValueError(f"dataset name {name!r} is built in; choose another name")
    DATASETS[name] = factory


def registered_datasets() -> list[str]:
    """The names :func:`load` knows (any other is tried as a TFDS dataset)."""
    return sorted(DATASETS)


def _array_factory(load_split):
    def factory(split, *, path=None, data_dir=None, image_size=None):
        src = load_split(split, path)
        if image_size is not None and tuple(image_size) != src.image_shape[:2]:
            raise ValueError(f"{src.name} images are {src.image_shape[:2]}; image_size={tuple(image_size)} is only "
                             "supported for TFDS datasets and image folders")
        return src

    return factory


DATASETS.update({
    "fashion_mnist_idx": _array_factory(lambda split, path: load_fashion_mnist(split, path)),
    "digits": _array_factory(lambda split, path: load_digits(split)),
    **{n: _array_factory(lambda split, path, n=n: load_synthetic(n, split)) for n in SYNTHETIC},
    **{n: functools.partial(tfds_source, n) for n in TFDS_NAMES},
})
BUILTIN_DATASETS = tuple(DATASETS)


def load(name: str, split: str, *, path=None, data_dir=None, image_size=None):
    """The source ``split`` of dataset ``name``: a registered name (:func:`register_dataset`; built
    in: ``'fashion_mnist_idx'`` - the default, offline IDX files in ``path`` -, ``'digits'``
    (scikit-learn), ``'synthetic_cifar'`` (random, for timing: :func:`load_synthetic`), the TFDS
    names of :data:`TFDS_NAMES`), else any TFDS dataset name (:func:`tfds_source` with its default
    keys; ``data_dir``, ``image_size``).  An unknown name is a ``ValueError`` listing the
    registered ones."""
    kw = {k: v for k, v in (("path", path), ("data_dir", data_dir), ("image_size", image_size)) if v is not None}
    if name not in DATASETS:
        return tfds_source(name, split, data_dir=data_dir, image_size=image_size)
    factory = DATASETS[name]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read: pass everything
        params = None
    # only what the factory takes (an image_size it ignores is caught by build_setup's shape check)
    if params is not None and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    return factory(split, **kw)


def holdout(source, fraction: float, *, seed: int = 0):
    """``(rest, held_out)``: ``round(fraction * len(source))`` samples of ``source`` chosen by a
    permutation seeded with ``seed`` (a validation split), and the others; each keeps the source's
    order.  Both must hold at least one sample (else a ``ValueError``)."""
    n = len(source)
    k = int(round(fraction * n))
    if not 0 < k < n:
        raise ValueError(f"val_fraction={fraction} of the {n} training samples holds out {k}; the validation and the "
                         "training data both need at least one sample")
    perm = np.random.default_rng(int(seed)).permutation(n)
    return source.subset(np.sort(perm[k:])), source.subset(np.sort(perm[:k]))


# ---------------------------------------------------------------------------- checks
PROTOCOL = ("take", "subset", "fingerprint", "image_shape", "num_classes", "target_shape", "pixel_scale", "name")


def check_source(source, what: str = "the data") -> None:
    """``source`` against the source protocol (this module's docstring): a ``TypeError`` naming
    what it lacks, or a ``ValueError`` for an empty source or a malformed shape or class count."""
    missing = [a for a in ("__len__", *PROTOCOL) if not hasattr(source, a)]
    if missing:
        raise TypeError(f"{what}: a {type(source).__name__} is not a data source, it lacks {', '.join(missing)} "
                        "(see the source protocol in dcnn_dd.data.sources; dcnn_dd.data.from_arrays makes one)")
    if len(source) == 0:
        raise ValueError(f"{what} ({source.name}) has no samples")
    shape = tuple(source.image_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise ValueError(f"{what} ({source.name}): image_shape {shape} must be (H, W, C), positive integers")
    nc = source.num_classes
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, (int, np.integer)) or nc < 1):
        raise ValueError(f"{what} ({source.name}): num_classes={nc!r} must be a positive integer or None")
    if not isinstance(source.target_shape, tuple):
        raise ValueError(f"{what} ({source.name}): target_shape {source.target_shape!r} must be a tuple")
    if not float(source.pixel_scale) > 0:
        raise ValueError(f"{what} ({source.name}): pixel_scale {source.pixel_scale!r} must be positive")


SPLIT_FIXES = {
    "image shape": "give both one image size (image_size=(H, W) for TFDS data and image folders; resize arrays)",
    "number of classes": "give both the same num_classes (dcnn_dd.data.from_arrays infers it per split from the "
                         "largest label)",
    "target shape": "give both targets of one shape",
    "pixel scale (uint8 or float images)": "give both uint8 images or both float images",
}


def check_splits(**splits) -> None:
    """The splits (e.g. ``train=..., val=..., test=...``; None entries skipped) fit together: the
    same image shape, number of classes, target shape and pixel scale as the first one; else a
    one-line ``ValueError`` naming both splits, their values and the fix."""
    named = [(k, s) for k, s in splits.items() if s is not None]
    if not named:
        return
    (first, ref), rest = named[0], named[1:]
    for split, src in rest:
        for what, get in (("image shape", lambda s: tuple(s.image_shape)),
                          ("number of classes", lambda s: s.num_classes),
                          ("target shape", lambda s: tuple(s.target_shape)),
                          ("pixel scale (uint8 or float images)", lambda s: float(s.pixel_scale))):
            a, b = get(ref), get(src)
            if a != b:
                raise ValueError(f"the {first} and {split} data differ in {what}: {first} {a}, {split} {b}; "
                                 f"{SPLIT_FIXES[what]}")


def describe(source) -> dict:
    """What a run directory records of a source (``data.json``): name, size, shapes, classes,
    pixel scale and :meth:`fingerprint`."""
    out = {"name": str(source.name), "size": len(source), "image_shape": [int(d) for d in source.image_shape],
           "pixel_scale": float(source.pixel_scale),
           "num_classes": None if source.num_classes is None else int(source.num_classes),
           "target_shape": [int(d) for d in source.target_shape], "fingerprint": str(source.fingerprint())}
    names = getattr(source, "class_names", None)
    if names:
        out["class_names"] = list(names)
    return out


def channel_mean(source, max_samples: int = 10000, chunk: int = 1000) -> np.ndarray:
    """Per-channel mean of the images divided by ``source.pixel_scale`` (255 for uint8 images: [0, 1]
    units), shape (C,), over ``max_samples`` evenly spaced samples (all of them if fewer): what
    :func:`dcnn_dd.data.augment.normalize` subtracts."""
    n = len(source)
    if n == 0:
        raise ValueError(f"{source.name}: empty dataset, no mean")
    idx = np.unique(np.linspace(0, n - 1, min(n, int(max_samples))).round().astype(np.int64))
    total, count = None, 0
    for i in range(0, idx.size, chunk):
        images, _ = source.take(idx[i:i + chunk])
        s = images.reshape(-1, images.shape[-1]).sum(axis=0, dtype=np.float64)
        total = s if total is None else total + s
        count += images.shape[0] * images.shape[1] * images.shape[2]
    return (total / count / float(getattr(source, "pixel_scale", 255.0))).astype(np.float32)
