"""Host side of the input pipeline: batch order, background prefetch, transfer to devices.

* :func:`epoch_order` - the dataset indices of every batch of an epoch, a pure function of
  (seed, epoch): every process of a multi-process run computes the same order, and a run
  resumed at step s of an epoch continues with exactly the batches it would have seen.
* :func:`device_put_batch` - gathers the rows of one batch and puts them on the devices as uint8
  (normalisation and augmentation happen on the device, :mod:`dcnn_dd.data.augment`).  With a
  ``jax.sharding.Sharding`` it builds global arrays with ``jax.make_array_from_callback``, each
  process loading only the rows of its own devices.
* :func:`batches` / :func:`evaluate_batches` - the training and evaluation iterators, with a
  bounded background-thread :class:`Prefetcher` so host gathering overlaps device compute.
"""

from __future__ import annotations

import queue
import threading

import jax
import numpy as np


# ---------------------------------------------------------------------------- batch order
def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in an epoch of ``n`` samples: ``n // batch_size`` (or the ceiling)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(seed: int, epoch: int, n: int, batch_size: int, shuffle: bool = True,
                drop_remainder: bool = True) -> np.ndarray:
    """(steps, batch_size) int64 dataset indices of the batches of ``epoch``.

    A permutation of range(n) drawn by ``numpy.random.default_rng([seed, epoch])`` (or range(n)
    without ``shuffle``), cut into batches.  ``drop_remainder`` drops the last ``n % batch_size``
    samples of the permutation (different ones every epoch); otherwise the last batch is
    completed with the first samples of the permutation (they are seen twice that epoch).
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed={seed} and epoch={epoch} must be >= 0")
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle else np.arange(n)
    perm = perm.astype(np.int64)
    if steps * batch_size > n:
        perm = np.concatenate([perm, perm[: steps * batch_size - n]])
    return perm[: steps * batch_size].reshape(steps, batch_size)


# ---------------------------------------------------------------------------- prefetch
_END = object()


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(it, q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in it:
            if not _put(q, stop, (item, None)):
                break
        else:
            _put(q, stop, (_END, None))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer
        _put(q, stop, (_END, e))
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class Prefetcher:
    """Iterate ``iterable`` in a daemon thread, ``size`` items ahead (a bounded queue).

    An exception raised by the iterable is re-raised by ``next()`` in the consumer.  ``close()``
    (also on ``with`` exit, garbage collection, or KeyboardInterrupt in the consumer) stops the
    thread: it never blocks on a full queue for more than 0.1 s without checking the stop flag,
    and it is a daemon, so an interrupted program exits.
    """

    def __init__(self, iterable, size: int = 2):
        if size < 1:
            raise ValueError(f"prefetch size={size} must be >= 1")
        self._queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        # the thread holds no reference to self: an abandoned Prefetcher is collected, and
        # __del__ stops the thread
        self._thread = threading.Thread(target=_produce, args=(iter(iterable), self._queue, self._stop), daemon=True,
                                        name="dcnn_dd-prefetch")
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                item, error = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise StopIteration from None
            except BaseException:  # KeyboardInterrupt while waiting
                self.close()
                raise
        if item is _END:
            self._done = True
            self._stop.set()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self, timeout: float = 5.0) -> None:
        """Stop the producer thread and drop what it prefetched."""
        self._done = True
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self._stop.set()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def prefetch(iterable, size: int = 2):
    """``iterable`` prefetched ``size`` items ahead in a background thread (``size=0``: as is)."""
    return iter(iterable) if size == 0 else Prefetcher(iterable, size)


# ---------------------------------------------------------------------------- transfer
def device_put_batch(source, indices, sharding=None, extras: dict | None = None):
    """(images uint8, labels int32 (or the source's targets, ``target_shape``), indices int32) of the
    samples ``indices`` as jax arrays.

    ``sharding``: a ``jax.sharding.Sharding`` for the batch (applied to all three arrays; a
    ``NamedSharding(mesh, P('data'))`` splits the leading axis); each local device's rows are
    gathered from ``source`` once, in the process that owns the device, so every process of a
    multi-process run calls this with the same ``indices`` and loads only its share.  Without a
    sharding, a plain ``jax.device_put`` on the default device.  ``extras``: more host arrays
    of leading size ``len(indices)`` to put the same way (e.g. an evaluation mask), appended to
    the returned tuple in order.
    """
    indices = np.asarray(indices)
    if indices.ndim != 1:
        raise ValueError(f"indices must be 1-d (one batch), got shape {indices.shape}")
    extras = dict(extras or {})
    for k, v in extras.items():
        if np.shape(v)[:1] != indices.shape:
            raise ValueError(f"extra {k!r} has leading size {np.shape(v)[:1]}, the batch has {indices.size}")
    if sharding is None:
        images, labels = source.take(indices)
        host = (images, labels, indices.astype(np.int32), *(np.asarray(v) for v in extras.values()))
        return tuple(jax.device_put(x) for x in host)
    b = indices.size
    cache: dict = {}

    def rows(index0: slice):
        key = index0.indices(b)
        if key not in cache:
            cache[key] = source.take(indices[index0])
        return cache[key]

    image_shape = tuple(source.image_shape)
    target_shape = tuple(getattr(source, "target_shape", ()))  # () for class labels
    out = [
        jax.make_array_from_callback((b, *image_shape), sharding, lambda idx: rows(idx[0])[0][(slice(None), *idx[1:])]),
        jax.make_array_from_callback((b, *target_shape), sharding,
                                     lambda idx: rows(idx[0])[1][(slice(None), *idx[1:])]),
        jax.make_array_from_callback((b,), sharding, lambda idx: indices[idx[0]].astype(np.int32)),
    ]
    for v in extras.values():
        v = np.asarray(v)
        out.append(jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx]))
    return tuple(out)


def batches(source, *, seed: int, epoch: int, batch_size: int, start_step: int = 0, sharding=None,
            prefetch: int = 2, shuffle: bool = True, steps: int | None = None):
    """Device batches ``(images, labels, indices)`` of ``epoch`` from step ``start_step`` on
    (resuming mid-epoch gives the same remaining batches as an uninterrupted epoch).  Returns an
    iterator with ``close()``; ``prefetch`` batches are gathered ahead in a background thread.
    ``steps``: only the first ``steps`` batches of the epoch's permutation (the paper's "300
    iterations per epoch" on Food101: every epoch a fresh random subset of the data)."""
    order = epoch_order(seed, epoch, len(source), batch_size, shuffle=shuffle)
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1")
        order = order[:steps]
    if not 0 <= start_step <= len(order):
        raise ValueError(f"start_step={start_step} outside the epoch's {len(order)} steps")

    def gen():
        for idx in order[start_step:]:
            yield device_put_batch(source, idx, sharding)

    return _prefetch(gen(), prefetch)


def evaluate_batches(source, batch_size: int, sharding=None, prefetch: int = 2):
    """Device batches ``(images, labels, indices, mask)`` over the whole source in order.  The last
    batch is padded to ``batch_size`` (with sample 0, mask False), so all batches have one shape
    and every sample counts exactly once where ``mask`` is True."""
    n = len(source)
    if n == 0:
        raise ValueError(f"{getattr(source, 'name', 'source')}: empty dataset, nothing to evaluate")
    steps = steps_per_epoch(n, batch_size, drop_remainder=False)

    def gen():
        for s in range(steps):
            idx = np.arange(s * batch_size, min((s + 1) * batch_size, n))
            mask = np.zeros(batch_size, bool)
            mask[: idx.size] = True
            idx = np.concatenate([idx, np.zeros(batch_size - idx.size, idx.dtype)])
            yield device_put_batch(source, idx, sharding, extras={"mask": mask})

    return _prefetch(gen(), prefetch)


def _prefetch(gen, size):
    return gen if size == 0 else Prefetcher(gen, size)
