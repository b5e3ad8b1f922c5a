"""Data for the experiments of Section 3: datasets, on-device augmentation, the input pipeline.

``sources``   datasets with random access on the host, one small protocol (its module docstring):
              your data through :func:`from_arrays` (NumPy/JAX arrays: uint8 or float images,
              any channels; class labels, multi-label vectors or regression targets),
              :func:`image_folder` (a sub-folder of PNG/JPEG files per class) and
              :func:`tfds_source` (any prepared TFDS dataset, keys and split names settable);
              :class:`ArraySource` (Fashion-MNIST from its IDX files - offline, the default -
              and scikit-learn's 8x8 digits), :class:`TFDSSource` (CIFAR-10/100, Food-101,
              Cats-vs-Dogs); :func:`load` by name through the registry of
              :func:`register_dataset`; :func:`check_splits`, :func:`describe` (what a run
              directory records, the fingerprint included), :func:`channel_mean`,
              :class:`DatasetNotFoundError` (its message is the command that fixes it)
``prepare``   ``python -m dcnn_dd.data.prepare NAME [--data-dir DIR]``: download a TFDS dataset
              once as ``array_record`` (needs TensorFlow; reading does not)
``augment``   pure, jit-able normalisation and per-sample augmentation (flip, shift, rotation,
              zoom) keyed by (seed, epoch, sample index); presets ``NONE``, ``CIFAR``,
              ``FOOD101``, ``FASHION``; :func:`preprocess` runs inside the training step
``pipeline``  host side: :func:`epoch_order` (deterministic, resumable), :class:`Prefetcher`,
              :func:`device_put_batch` (global arrays for data-parallel meshes),
              :func:`batches`, :func:`evaluate_batches` (padded, masked)

Your data to the engine::

    train = from_arrays(x_train, y_train, num_classes=10)       # or image_folder(path, "train", ...)
    test = from_arrays(x_test, y_test, num_classes=10)
    run_algorithm1(Config(dataset="mine", ...), "runs/mine", train=train, test=test)
    register_dataset("mine", lambda split: from_arrays(*arrays[split], num_classes=10))  # or by name

Typical use of the pieces (inside a jitted step, the sub-images are cut after the augmentation)::

    train = load("fashion_mnist_idx", "train")
    mean = channel_mean(train)
    for images, labels, ids in batches(train, seed=0, epoch=e, batch_size=128):
        x = preprocess(images, ids, seed=0, epoch=e, mean=mean, cfg=FASHION, train=True)
        subs = decompose_input(x, grid)                      # (K, B, h, w, C)
"""

from dcnn_dd.data.augment import (
    CIFAR, FASHION, FOOD101, NONE, PRESETS, Augment, augment_batch, augment_image, normalize, preprocess,
    sample_keys, sample_params,
)
from dcnn_dd.data.pipeline import (
    Prefetcher, batches, device_put_batch, epoch_order, evaluate_batches, prefetch, steps_per_epoch,
)
from dcnn_dd.data.sources import (
    ArraySource, DatasetNotFoundError, TFDSSource, channel_mean, check_source, check_splits, content_fingerprint,
    describe, find_fashion_mnist, from_arrays, holdout, image_folder, load, load_digits, load_fashion_mnist,
    load_synthetic, read_idx, register_dataset, registered_datasets, sampled_fingerprint, tfds_source,
)

__all__ = [
    "CIFAR", "FASHION", "FOOD101", "NONE", "PRESETS", "ArraySource", "Augment", "DatasetNotFoundError", "Prefetcher",
    "TFDSSource", "augment_batch", "augment_image", "batches", "channel_mean", "check_source", "check_splits",
    "content_fingerprint", "describe", "device_put_batch", "epoch_order", "evaluate_batches", "find_fashion_mnist",
    "from_arrays", "holdout", "image_folder", "load", "load_digits", "load_fashion_mnist", "load_synthetic",
    "normalize", "prefetch", "preprocess", "read_idx", "register_dataset", "registered_datasets", "sample_keys",
    "sample_params", "sampled_fingerprint", "steps_per_epoch", "tfds_source",
]
