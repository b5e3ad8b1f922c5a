"""Grain (``pip install grain``; ``pip install 'dcnn-dd[grain]'``) as the input pipeline, for
``python -m benchmarks.input_pipeline --grain``: the same batches' work as
:mod:`dcnn_dd.data.pipeline`, written the Grain way, and the checks of the guarantees our
pipeline's tests pin.  Grain is not a dependency of dcnn-dd: see docs/ecosystem.md for the
measurement and the decision.

Two Grain pipelines:

* ``grain`` (the Grain way): a per-record source (one ``{'image', 'label', 'index'}`` dict per
  sample), Grain's global shuffle (``MapDataset.shuffle(seed)``: a new permutation every epoch,
  seeded ``seed + epoch``), ``batch``, ``repeat`` (step s of epoch e is element e * steps + s);
  read with ``to_iter_dataset`` (no reader threads: the data is in memory, as Grain's
  ``ReadOptions`` advise); prefetched either with ``grain.experimental.device_put`` (a host-side
  prefetch thread, the transfer, a device-side prefetch thread) or with one reader thread
  (``ReadOptions(num_threads=1)``, the transfer in the consumer);
* ``grain-order``: Grain as the executor only: its elements are the rows of our
  :func:`~dcnn_dd.data.pipeline.epoch_order` (today's batches), each read with one
  ``source.take`` (a numpy gather), so Grain contributes the iterator, its state and the
  prefetching.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from dcnn_dd.data import pipeline

EPOCHS = 1000  # the grain-order source covers this many epochs (enough for any measurement)


def import_grain():
    """The ``grain`` module, or None when it is not installed."""
    try:
        import grain
    except ImportError:
        return None
    return grain


def version(grain) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    try:
        return pkg_version("grain")
    except PackageNotFoundError:
        return getattr(grain, "__version__", "?")


class Records:
    """``source`` as Grain reads a random-access source: one record (a dict) per index."""

    def __init__(self, source):
        self.source = source
        # an in-memory ArraySource: index the arrays directly (source.take per record costs more)
        self._images = getattr(source, "images", None)
        self._labels = getattr(source, "labels", None)

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        i = int(i)
        if self._images is not None:
            image, label = self._images[i], self._labels[i]
        else:
            images, labels = self.source.take(np.array([i]))
            image, label = images[0], labels[0]
        return {"image": image, "label": label, "index": np.int32(i)}


class OrderBatches:
    """Element k = batch s of epoch e (k = e * steps + s) of :func:`pipeline.epoch_order`, read
    with one ``source.take``: today's batches, as a Grain source."""

    def __init__(self, source, seed: int, batch: int, rows: slice = slice(None)):
        self.source, self.seed, self.batch, self.rows = source, seed, batch, rows
        self.steps = pipeline.steps_per_epoch(len(source), batch)

    def __len__(self):
        return self.steps * EPOCHS

    @functools.lru_cache(maxsize=2)
    def order(self, epoch: int) -> np.ndarray:
        return pipeline.epoch_order(self.seed, epoch, len(self.source), self.batch)

    def __getitem__(self, k):
        epoch, s = divmod(int(k), self.steps)
        idx = self.order(epoch)[s][self.rows]
        images, labels = self.source.take(idx)
        return {"image": images, "label": labels, "index": idx.astype(np.int32)}


def dataset(grain, source, *, seed: int, batch: int, process: int = 0, processes: int = 1):
    """The Grain way (module docstring).  With ``processes`` > 1: process ``process``'s rows of
    every global batch (the global batches are the same as with one process; the process loads
    ``batch // processes`` consecutive rows of each)."""
    if batch % processes:
        raise ValueError(f"batch {batch} is not divisible by {processes} processes")
    ds = grain.MapDataset.source(Records(source)).shuffle(seed=seed)
    ds = ds.batch(batch // processes, drop_remainder=True)
    if processes > 1:
        ds = ds[process::processes]
    return ds.repeat()


def order_dataset(grain, source, *, seed: int, batch: int):
    """Grain over today's batch order (module docstring)."""
    return grain.MapDataset.source(OrderBatches(source, seed, batch))


def iterator(grain, ds, *, prefetch: int = 0, how: str = "device_put", start: int = 0, state=None):
    """A Grain iterator over ``ds`` from element ``start`` (or from a saved ``state``).  Without
    ``prefetch``: no threads, host (numpy) elements.  With ``prefetch`` > 0, ``how``:
    ``'device_put'``: no reader threads, then ``grain.experimental.device_put`` (host and device
    buffers of ``prefetch`` elements, a thread each): jax arrays on the default device;
    ``'threads'``: one reader thread, ``prefetch`` elements ahead (``ReadOptions``): host elements."""
    ds = ds[start:] if start else ds
    if prefetch and how == "threads":
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    else:
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        if prefetch:
            if how != "device_put":
                raise ValueError(f"how={how!r}: 'device_put' or 'threads'")
            it_ds = grain.experimental.device_put(it_ds, jax.devices()[0], cpu_buffer_size=prefetch,
                                                  device_buffer_size=prefetch)
    it = iter(it_ds)
    if state is not None:
        it.set_state(state)
    return it


# ---------------------------------------------------------------------------- guarantees
def _host(batch) -> tuple:
    return tuple(np.asarray(batch[k]) for k in ("image", "label", "index"))


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b))


def _take(it, n):
    return [_host(next(it)) for _ in range(n)]


def _loader_batches(grain, source, *, seed, batch, process, processes):
    """Process ``process``'s batches of one epoch from Grain's ``DataLoader`` with an
    ``IndexSampler`` sharded as ``ShardByJaxProcess`` shards (``ShardOptions(process, processes)``)."""
    sampler = grain.samplers.IndexSampler(
        len(source), shard_options=grain.sharding.ShardOptions(process, processes, drop_remainder=True),
        shuffle=True, num_epochs=1, seed=seed)
    loader = grain.DataLoader(data_source=Records(source), sampler=sampler, worker_count=0,
                              operations=[grain.transforms.Batch(batch // processes, drop_remainder=True)])
    return [_host(b) for b in loader]


def check_guarantees(grain, n: int = 1024, batch: int = 64, seed: int = 3, epoch: int = 2, resume_at: int = 5):
    """Each guarantee of our pipeline, checked for the Grain pipeline on random data of ``n``
    samples: a dict of booleans (True: holds) with what each one means in ``docs/ecosystem.md``."""
    from dcnn_dd.data import sources

    rng = np.random.default_rng(0)
    src = sources.ArraySource(rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), rng.integers(0, 10, n), 10, "toy")
    steps = pipeline.steps_per_epoch(n, batch)

    def epoch_batches(seed_, epoch_, prefetch=0):
        it = iterator(grain, dataset(grain, src, seed=seed_, batch=batch), prefetch=prefetch, start=epoch_ * steps)
        return _take(it, steps)

    ref = epoch_batches(seed, epoch)
    ours = pipeline.epoch_order(seed, epoch, n, batch)
    out = {
        # the same (seed, epoch): the same batches, bitwise (fresh datasets, fresh iterators)
        "same_batches_same_seed_epoch": _equal(ref, epoch_batches(seed, epoch)),
        "prefetched_same_batches": _equal(ref, epoch_batches(seed, epoch, prefetch=2)),
        "other_epoch_other_batches": not _equal(ref, epoch_batches(seed, epoch + 1)),
        # every sample once per epoch (the remainder n % batch dropped)
        "epoch_is_a_permutation": len(np.unique(np.concatenate([b[2] for b in ref]))) == steps * batch,
        # today's batches (the permutation of numpy.random.default_rng([seed, epoch])): no, Grain
        # shuffles with its own index_shuffle
        "equals_todays_epoch_order": np.array_equal(np.stack([b[2] for b in ref]), ours),
        # Grain seeds epoch e with seed + e: (seed, epoch + 1) gives the batches of (seed + 1, epoch)
        "seed_epoch_collision": _equal(epoch_batches(seed, epoch + 1), epoch_batches(seed + 1, epoch)),
    }
    # resume mid-epoch from the iterator's state: the remaining batches, bitwise
    for name, prefetch, how in (("resume_mid_epoch_bitwise", 0, ""), ("resume_mid_epoch_bitwise_prefetched", 2, "device_put"),
                                ("resume_mid_epoch_bitwise_reader_thread", 2, "threads")):
        ds = dataset(grain, src, seed=seed, batch=batch)
        it = iterator(grain, ds, prefetch=prefetch, how=how, start=epoch * steps)
        _take(it, resume_at)
        state = it.get_state()
        want = _take(it, steps - resume_at)
        got = _take(iterator(grain, dataset(grain, src, seed=seed, batch=batch), prefetch=prefetch, how=how,
                             start=epoch * steps, state=state), steps - resume_at)
        out[name] = _equal(want, got)
        out[name.replace("bitwise", "state")] = repr(state)
    # 2 processes, the dataset API: each loads its consecutive rows of the same global batches
    parts = [_take(iterator(grain, dataset(grain, src, seed=seed, batch=batch, process=p, processes=2),
                            start=epoch * steps), steps) for p in range(2)]
    rows = [np.concatenate([b[2] for b in part]) for part in parts]
    out["two_processes_disjoint_rows"] = not set(rows[0].tolist()) & set(rows[1].tolist())
    out["two_processes_cover_the_epoch"] = set(rows[0].tolist()) | set(rows[1].tolist()) == set(
        np.concatenate([b[2] for b in ref]).tolist())
    glob = [tuple(np.concatenate([a, b]) for a, b in zip(x, y)) for x, y in zip(*parts)]
    out["two_processes_same_global_batches"] = _equal(glob, ref)
    # 2 processes, Grain's DataLoader + IndexSampler sharded like ShardByJaxProcess: each process
    # shuffles its own contiguous half of the records, so a global batch (process 0's rows, then
    # process 1's) is not a batch of the 1-process run
    parts = [_loader_batches(grain, src, seed=seed, batch=batch, process=p, processes=2) for p in range(2)]
    single = _loader_batches(grain, src, seed=seed, batch=batch, process=0, processes=1)
    rows = [np.concatenate([b[2] for b in part]) for part in parts]
    out["loader_two_processes_disjoint_rows"] = not set(rows[0].tolist()) & set(rows[1].tolist())
    out["loader_two_processes_cover_the_epoch"] = set(rows[0].tolist()) | set(rows[1].tolist()) == set(range(n))
    glob = [tuple(np.concatenate([a, b]) for a, b in zip(x, y)) for x, y in zip(*parts)]
    out["loader_two_processes_same_global_batches"] = _equal(glob, single)
    out["loader_process_0_rows_span"] = [int(rows[0].min()), int(rows[0].max())]
    # grain-order: today's batches by construction, resumable, each process reading its rows
    todays = [tuple(np.asarray(a) for a in b) for b in pipeline.batches(src, seed=seed, epoch=epoch, batch_size=batch,
                                                                         prefetch=0)]
    ds = order_dataset(grain, src, seed=seed, batch=batch)
    out["order_equals_todays_batches"] = _equal(_take(iterator(grain, ds, start=epoch * steps), steps), todays)
    it = iterator(grain, ds, prefetch=2, start=epoch * steps)
    _take(it, resume_at)
    state = it.get_state()
    got = _take(iterator(grain, order_dataset(grain, src, seed=seed, batch=batch), prefetch=2, start=epoch * steps,
                         state=state), steps - resume_at)
    out["order_resume_mid_epoch_bitwise_prefetched"] = _equal(got, todays[resume_at:])
    half = batch // 2
    parts = [_take(iterator(grain, grain.MapDataset.source(OrderBatches(src, seed, batch, slice(p * half, (p + 1) * half))),
                            start=epoch * steps), steps) for p in range(2)]
    glob = [tuple(np.concatenate([a, b]) for a, b in zip(x, y)) for x, y in zip(*parts)]
    out["order_two_processes_same_global_batches"] = _equal(glob, todays)
    return out
