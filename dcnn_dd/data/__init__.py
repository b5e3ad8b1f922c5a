"""Data for the experiments of Section 3: datasets, on-device augmentation, the input pipeline.

``sources``   datasets with random access on the host: :class:`ArraySource` (Fashion-MNIST from
              its IDX files - offline, the default - and scikit-learn's 8x8 digits),
              :class:`TFDSSource` (prepared TFDS ``array_record`` datasets: CIFAR-10/100,
              Food-101, Cats-vs-Dogs), :func:`load` by name, :func:`channel_mean`,
              :class:`DatasetNotFoundError` (its message is the command that fixes it)
``prepare``   ``python -m dcnn_dd.data.prepare NAME [--data-dir DIR]``: download a TFDS dataset
              once as ``array_record`` (needs TensorFlow; reading does not)
``augment``   pure, jit-able normalisation and per-sample augmentation (flip, shift, rotation,
              zoom) keyed by (seed, epoch, sample index); presets ``NONE``, ``CIFAR``,
              ``FOOD101``, ``FASHION``; :func:`preprocess` runs inside the training step
``pipeline``  host side: :func:`epoch_order` (deterministic, resumable), :class:`Prefetcher`,
              :func:`device_put_batch` (global arrays for data-parallel meshes),
              :func:`batches`, :func:`evaluate_batches` (padded, masked)

Typical use (inside a jitted step, the sub-images are cut after the augmentation)::

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
    ArraySource, DatasetNotFoundError, TFDSSource, channel_mean, find_fashion_mnist, load, load_digits,
    load_fashion_mnist, load_synthetic, read_idx,
)

__all__ = [
    "CIFAR", "FASHION", "FOOD101", "NONE", "PRESETS", "ArraySource", "Augment", "DatasetNotFoundError", "Prefetcher",
    "TFDSSource", "augment_batch", "augment_image", "batches", "channel_mean", "device_put_batch", "epoch_order",
    "evaluate_batches", "find_fashion_mnist", "load", "load_digits", "load_fashion_mnist", "load_synthetic",
    "normalize", "prefetch", "preprocess", "read_idx", "sample_keys", "sample_params", "steps_per_epoch",
]
