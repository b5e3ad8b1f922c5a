"""Random-access image-classification datasets on the host: uint8 images, int32 labels.

Every source has the same small contract, all the training loop needs (Algorithm 1 reads the
same samples for the sub-networks and for the global network, so one source serves both):

* ``len(source)``, ``source.num_classes``, ``source.name``, ``source.image_shape`` (H, W, C);
* ``source.take(indices) -> (images uint8 (n, H, W, C), labels int32 (n,))`` for any integer
  index array (the batch order is chosen by :mod:`dcnn_dd.data.pipeline`, never by the source);
* ``source.subset(n_or_indices)``.

Sources
-------
* :class:`ArraySource` - arrays in memory: Fashion-MNIST from its IDX files
  (:func:`load_fashion_mnist`, offline, the package's default dataset) and scikit-learn's 8x8
  digits (:func:`load_digits`, bundled with scikit-learn: the smallest end-to-end check);
  ``synthetic_cifar`` (:func:`load_synthetic`): random images of CIFAR-10's shape and size, for
  timing where no dataset is at hand (nothing to learn).
* :class:`TFDSSource` - a prepared TensorFlow-Datasets ``array_record`` dataset, read with
  ``tfds.data_source`` (random access, no TensorFlow needed to *read*; preparing once needs it,
  see :mod:`dcnn_dd.data.prepare`).  CIFAR-10/100 (Section 3.1.1), Food-101 (Section 3.1.2),
  Cats-vs-Dogs (Section 3.1.3), Fashion-MNIST.

:func:`load` dispatches on the dataset name.  A dataset that is not on this machine raises
:class:`DatasetNotFoundError`, whose message is the command that fixes it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gzip
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


# ---------------------------------------------------------------------------- ArraySource
@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
    """A dataset held in memory: ``images`` uint8 (N, H, W, C), ``labels`` int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self):
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (0..255), got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"{self.name}: images must be (N, H, W, C), got shape {images.shape}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but labels of shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{self.name}: labels must be integers, got {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{self.name}: labels span {labels.min()}..{labels.max()}, "
                             f"outside 0..{self.num_classes - 1}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
        object.__setattr__(self, "num_classes", int(self.num_classes))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    def take(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, H, W, C) uint8, labels (n,) int32) of the samples ``indices``."""
        idx = _check_indices(indices, len(self), self.name)
        return self.images[idx], self.labels[idx]

    def subset(self, n_or_indices) -> ArraySource:
        """The first ``n`` samples (an int) or the samples ``indices`` (an int array), in that order."""
        idx = _subset_indices(n_or_indices, len(self), self.name)
        return ArraySource(self.images[idx], self.labels[idx], self.num_classes, self.name)

    def __repr__(self) -> str:
        return (f"ArraySource({self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
                f"num_classes={self.num_classes})")


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

    ``split``: 'train' / 'test' (mapped to the dataset's own split names by ``TFDS_SPLITS``) or
    any TFDS split string ('train[:10%]').  ``image_size=(H, W)`` resizes every decoded image
    with PIL bilinear (needed for variable-size datasets: Food-101, Cats-vs-Dogs); grayscale
    images keep their single channel.  ``reader``: any sequence of ``{'image', 'label'}`` dicts
    to use instead of opening the dataset (tests).  Decoding (PNG/JPEG, on the host) happens in
    :meth:`take`, split over ``num_workers`` threads (PIL decodes and resizes in C, largely
    without the GIL; the array_record reader is thread-safe).
    """

    def __init__(self, name: str, split: str = "train", *, data_dir=None, image_size=None, reader=None,
                 num_classes: int | None = None, image_key: str = "image", label_key: str = "label",
                 num_workers: int | None = None, _index=None, _pool=None):
        self.name, self.split, self.data_dir = name, split, data_dir
        self.num_workers = int(num_workers or min(8, os.cpu_count() or 1))
        self._pool = _pool
        self.image_key, self.label_key = image_key, label_key
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self._feature_shape = None
        if reader is None:
            reader, num_classes, self._feature_shape = _open_tfds(name, split, data_dir, image_key, label_key)
        elif num_classes is None:
            raise ValueError("TFDSSource(reader=...) needs num_classes=")
        self.reader = reader
        self.num_classes = int(num_classes)
        self._index = None if _index is None else np.asarray(_index, np.int64)
        self._shape_cache = None

    def __len__(self) -> int:
        return len(self.reader) if self._index is None else int(self._index.size)

    def _decode(self, i: int) -> tuple[np.ndarray, int]:
        ex = self.reader[int(i)]
        img = np.asarray(ex[self.image_key])
        if img.dtype != np.uint8:
            raise ValueError(f"{self.name}: image {i} is {img.dtype}, expected uint8")
        if img.ndim == 2:
            img = img[..., None]
        if self.image_size is not None:
            img = resize_image(img, self.image_size)
        return img, int(ex[self.label_key])

    def take(self, indices) -> tuple[np.ndarray, np.ndarray]:
        idx = _check_indices(indices, len(self), self.name)
        rows = idx.reshape(-1) if self._index is None else self._index[idx.reshape(-1)]
        decoded = self._decode_all(rows)
        if not decoded:
            return np.zeros((*idx.shape, *self.image_shape), np.uint8), np.zeros(idx.shape, np.int32)
        shapes = {im.shape for im, _ in decoded}
        if len(shapes) > 1:
            raise ValueError(f"{self.name}: images of different sizes {sorted(shapes)[:4]} in one batch; "
                             "pass image_size=(H, W) to resize them")
        images = np.stack([im for im, _ in decoded]).reshape(*idx.shape, *decoded[0][0].shape)
        labels = np.asarray([lab for _, lab in decoded], np.int32).reshape(idx.shape)
        return images, labels

    def _decode_all(self, rows) -> list:
        workers = min(self.num_workers, len(rows))
        if workers <= 1:
            return [self._decode(i) for i in rows]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_workers, "dcnn_dd-decode")
        chunks = np.array_split(np.asarray(rows), workers)
        parts = self._pool.map(lambda chunk: [self._decode(i) for i in chunk], chunks)
        return [d for part in parts for d in part]

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
                shape = self._decode(0 if self._index is None else self._index[0])[0].shape
            self._shape_cache = tuple(int(s) for s in shape)
        return self._shape_cache

    def subset(self, n_or_indices) -> TFDSSource:
        idx = _subset_indices(n_or_indices, len(self), self.name)
        rows = idx if self._index is None else self._index[idx]
        sub = TFDSSource(self.name, self.split, data_dir=self.data_dir, image_size=self.image_size, reader=self.reader,
                         num_classes=self.num_classes, image_key=self.image_key, label_key=self.label_key,
                         num_workers=self.num_workers, _index=rows, _pool=self._pool)
        sub._feature_shape = self._feature_shape
        return sub

    def __repr__(self) -> str:
        return f"TFDSSource({self.name!r}, split={self.split!r}, n={len(self)}, image_size={self.image_size})"


def _open_tfds(name, split, data_dir, image_key, label_key):
    """(reader, num_classes, feature image shape) of a prepared TFDS dataset."""
    try:
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import registered
    except ImportError:
        raise ImportError(f"reading TFDS dataset {name!r} needs tensorflow-datasets (a dependency of dcnn-dd): "
                          "pip install tensorflow-datasets") from None
    tfds_split = TFDS_SPLITS.get(name, {}).get(split, split)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except registered.DatasetNotFoundError:
        raise ValueError(f"{name!r} is not a TFDS dataset name; known to work here: {', '.join(TFDS_NAMES)}, "
                         "or 'fashion_mnist_idx' / 'digits' (no TFDS)") from None
    features = builder.info.features
    if image_key not in features or label_key not in features:
        raise ValueError(f"TFDS dataset {name!r} has features {list(features)}; "
                         f"expected {image_key!r} and {label_key!r}")
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
    shape = tuple(features[image_key].shape)
    return reader, features[label_key].num_classes, shape


# ---------------------------------------------------------------------------- dispatch
def load(name: str, split: str, *, path=None, data_dir=None, image_size=None):
    """A source by name: ``'fashion_mnist_idx'`` (the default; offline IDX files, ``path``),
    ``'digits'`` (scikit-learn), ``'synthetic_cifar'`` (random, for timing: :func:`load_synthetic`),
    or any TFDS name (:class:`TFDSSource`; ``data_dir``, ``image_size``)."""
    if name in ("fashion_mnist_idx", "digits", *SYNTHETIC):
        if name in SYNTHETIC:
            src = load_synthetic(name, split)
        else:
            src = load_fashion_mnist(split, path) if name == "fashion_mnist_idx" else load_digits(split)
        if image_size is not None and tuple(image_size) != src.image_shape[:2]:
            raise ValueError(f"{name} images are {src.image_shape[:2]}; image_size={tuple(image_size)} is only "
                             "supported for TFDS datasets")
        return src
    return TFDSSource(name, split, data_dir=data_dir, image_size=image_size)


def channel_mean(source, max_samples: int = 10000, chunk: int = 1000) -> np.ndarray:
    """Per-channel mean of the images in [0, 1] units, shape (C,), over ``max_samples`` evenly
    spaced samples (all of them if fewer): what :func:`dcnn_dd.data.augment.normalize` subtracts."""
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
    return (total / count / 255.0).astype(np.float32)
