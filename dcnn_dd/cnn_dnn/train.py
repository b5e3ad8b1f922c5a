"""CNN-DNN training end to end, on the engine of Algorithm 1 (resumable phases, checkpoints).

Phases of :func:`run_cnn_dnn` (each checkpointed every epoch; re-running the same call resumes):

1. **local CNNs** = the sub-network phase of Algorithm 1 (:func:`dcnn_dd.train.run_algorithm1`):
   the K local CNNs (``model.subnet(K)``) train concurrently and independently on their
   sub-images, with the same strategies (``auto`` measures) and devices.  The same run also
   trains the **global CNN** directly (GNet-R, ``gnet_r_epochs``) and composes the local CNNs
   into the **Gu et al. composed network** (GNet-T before fine-tuning).  The local CNNs *are*
   the SNets: ``<run_dir>`` is an Algorithm-1 run directory.
2. **features**: the frozen local CNNs' class probabilities on the training and test images
   (no augmentation), (N, K, classes).
3. **aggregators** on the test probabilities: averaging, majority vote (ties: the highest
   summed probability, then the lowest class, :mod:`.aggregate`), the logit sum.
4. **dnn**: the DNN trained on the frozen local probabilities of the training set.
5. **coherent**: the coherent CNN-DNN (:class:`~dcnn_dd.cnn_dnn.model.CNNDNN`) from random
   initialisation, trained end to end, data-parallel.
6. **transfer**: the coherent CNN-DNN initialised with the trained local CNNs and the trained
   DNN (bitwise; the initial variables are saved as the ``transfer_init`` checkpoint), then
   trained end to end.  Its accuracy before training equals the DNN phase's, by construction.

The CNN-DNN phases live in ``<run_dir>/cnn_dnn/`` with their own configuration check.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dcnn_dd import sharding
from dcnn_dd.cnn_dnn import aggregate
from dcnn_dd.cnn_dnn.aggregate import DNN
from dcnn_dd.cnn_dnn.model import CNNDNN, INNER, join
from dcnn_dd.complexity import count_params
from dcnn_dd.data.sources import content_fingerprint
from dcnn_dd.train.checkpoint import RunDir, run_lock, write_json
from dcnn_dd.train.composed_training import monitored, run_algorithm1
from dcnn_dd.train.config import Config
from dcnn_dd.train.loop import TrainData
from dcnn_dd.train.phases import Compute, Deferred, Train, run_phases
from dcnn_dd.train.schedules import schedule_from_json
from dcnn_dd.train.setup import Setup, build_setup
from dcnn_dd.train.state import create_state, phase_rng, top_k_correct
from dcnn_dd.train.steps import (
    Steps, data_parallel_eval_step, data_parallel_train_step, epoch_metrics, evaluate, global_state, global_train_step,
    subnet_batch_sharding, subnet_sharding, with_rng,
)
from dcnn_dd.tree import init_variables

PHASES = ("dnn", "coherent", "transfer")


@dataclasses.dataclass(frozen=True)
class CNNDNNConfig:
    """The CNN-DNN phases on top of an Algorithm-1 :class:`~dcnn_dd.train.Config` (which sets the
    data, the global architecture, K and the grid, the local CNNs' epochs (``snet_epochs``) and
    the global CNN's (``gnet_r_epochs``)).  ``dnn_hidden=None``: the DNN's default widths
    (:func:`~dcnn_dd.cnn_dnn.aggregate.default_hidden`).  A phase with 0 epochs is skipped.
    ``inner``: how the coherent model runs its K local CNNs (``vmap`` or ``sequential``).  The
    ``*_lr`` fields take the schedules of ``Config``'s (per epoch or per step,
    :func:`~dcnn_dd.train.schedules.schedule_from_json`); the phases train with the
    configuration's ``optimizer``."""

    dnn_hidden: list | None = None
    dnn_epochs: int = 10
    dnn_lr: object = 1e-3
    dnn_batch_size: int | None = None  # None: the configuration's batch size
    coherent_epochs: int = 3
    coherent_lr: object = 1e-3
    transfer_epochs: int = 1
    transfer_lr: object = 1e-4
    inner: str = "vmap"

    def __post_init__(self):
        if self.inner not in INNER:  # checked here, not only by CNNDNN after the local CNNs trained
            raise ValueError(f"inner={self.inner!r}: choose one of {INNER}")
        for name in ("dnn_lr", "coherent_lr", "transfer_lr"):
            try:
                schedule_from_json(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: dict) -> CNNDNNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown CNN-DNN configuration keys {sorted(set(d) - known)}; known: {sorted(known)}")
        return cls(**d)


class FeatureSource:
    """In-memory (N, K, classes) float32 local probabilities with labels: a data source for the
    engine's pipeline (``take``, ``image_shape``, ``fingerprint``; see :mod:`dcnn_dd.data.sources`),
    so the DNN phase uses :func:`run_phase` too."""

    target_shape = ()  # integer class labels
    pixel_scale = 1.0  # float features, not normalised

    def __init__(self, features, labels, num_classes: int, name: str = "features"):
        self.features = np.asarray(features, np.float32)
        self.labels = np.asarray(labels, np.int32)
        self.num_classes, self.name = int(num_classes), name
        if self.features.ndim != 3 or self.labels.shape != self.features.shape[:1]:
            raise ValueError(f"{name}: features (N, K, C) and labels (N,), got {self.features.shape}, "
                             f"{self.labels.shape}")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.features.shape[1:])

    def take(self, indices):
        idx = np.asarray(indices)
        return self.features[idx], self.labels[idx]

    def subset(self, n_or_indices) -> FeatureSource:
        idx = np.arange(n_or_indices) if isinstance(n_or_indices, (int, np.integer)) else np.asarray(n_or_indices)
        return FeatureSource(self.features[idx], self.labels[idx], self.num_classes, self.name)

    def fingerprint(self) -> str:
        return content_fingerprint(self.features, self.labels, meta=(self.num_classes,))


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32)


def aggregator_scores(local_logits, labels) -> dict:
    """Test accuracy (and top-5 where the aggregator ranks classes) of averaging, majority vote and
    the logit sum, from the (K, N, classes) local logits."""
    logits = jnp.asarray(local_logits, jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    labels = jnp.asarray(labels)
    out = {}
    for name, scores in (("average", aggregate.average(probs)), ("logit_sum", aggregate.summed_logits(logits))):
        out[name] = {"acc": float(jnp.mean(jnp.argmax(scores, -1) == labels)),
                     "top5": float(jnp.mean(top_k_correct(scores, labels, 5)))}
    out["vote"] = {"acc": float(jnp.mean(aggregate.majority_vote(probs) == labels)), "top5": None}
    ties = aggregate.votes(probs)
    top = ties.max(-1, keepdims=True)
    out["vote"]["tied_fraction"] = float(jnp.mean(jnp.sum(ties == top, -1) > 1))
    return out


def dnn_model(setup: Setup, cfg: CNNDNNConfig) -> DNN:
    hidden = None if cfg.dnn_hidden is None else tuple(cfg.dnn_hidden)
    return DNN(setup.train_source.num_classes, hidden)


def coherent_model(setup: Setup, cfg: CNNDNNConfig) -> CNNDNN:
    return CNNDNN(setup.sub, dnn_model(setup, cfg), setup.grid, cfg.inner)


def cnn_dnn_phases(setup: Setup, cfg: CNNDNNConfig, local_vars, strategy: str, run_dir: RunDir,
                   steps: Steps | None = None) -> list:
    """The CNN-DNN's phases 2-6 in ``run_dir`` (the trained :data:`PHASES`, and ``features``,
    ``aggregators``, ``dnn_variables``, ``transfer_checkpoint``, ``transfer_init``) on top of the
    trained local CNNs ``local_vars`` (stacked on axis 0), which run with ``strategy``; ``steps``:
    compiled steps to share with the run that trained them."""
    config = setup.config
    check_task(config)
    steps = Steps(setup) if steps is None else steps
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 6)
    k_dnn, k_coh = jax.random.split(key)
    num_classes = setup.train_source.num_classes
    bsh = sharding.batch_sharding(setup.data_mesh)
    train_images = TrainData(setup.train_source, config.batch_size, config.seed, bsh, config.steps_per_epoch)

    def features(results):  # the frozen local CNNs' outputs on the training and test sets
        t0 = time.perf_counter()
        on_dev = sharding.put_global(local_vars, subnet_sharding(setup, strategy))
        tr = steps.subnet_evaluator(strategy, with_logits=True, source=setup.train_source)(on_dev)
        te = steps.subnet_evaluator(strategy, with_logits=True)(on_dev)
        seconds = time.perf_counter() - t0  # the two evaluations (the probabilities below are not timed)
        return {"train": FeatureSource(np.swapaxes(softmax(tr["logits"]), 0, 1), tr["labels"], num_classes,
                                       "train probs"),
                "test": FeatureSource(np.swapaxes(softmax(te["logits"]), 0, 1), te["labels"], num_classes,
                                      "test probs"),
                "test_logits": te["logits"], "test_labels": te["labels"], "seconds": seconds}

    # ---- the DNN on the frozen local outputs: its own data-parallel steps (no augmentation)
    dnn = dnn_model(setup, cfg)
    dnn_step = with_rng(data_parallel_train_step(dnn, setup.tx, setup.data_mesh), phase_rng(config.seed, "dnn"))
    dnn_eval = data_parallel_eval_step(dnn, setup.data_mesh)
    dnn_batch = cfg.dnn_batch_size or config.batch_size
    sharding.check_batch(dnn_batch, setup.data_mesh)
    dnn_init = jax.device_get(init_variables(dnn, k_dnn, (1, config.K, num_classes)))

    def dnn_phase(results):
        feats = results["features"]
        return Train("dnn", cfg.dnn_epochs, schedule_from_json(cfg.dnn_lr), dnn_step,
                     epoch_metrics(lambda v: evaluate(dnn_eval, v, feats["test"], setup.eval_batch, bsh)),
                     TrainData(feats["train"], dnn_batch, config.seed, bsh),
                     init=lambda r: global_state(setup, dnn_init), plateau_patience=config.plateau_patience,
                     keep=lambda state: sharding.to_host(state.variables), optional=True, **monitored(setup))

    # ---- the coherent CNN-DNN, end to end: from random initialisation, and from the trained parts
    coh = coherent_model(setup, cfg)
    coh_step = global_train_step(setup, coh)
    coh_eval = data_parallel_eval_step(coh, setup.data_mesh, setup.prep)

    def coh_evaluate(variables):  # the validation set, as every per-epoch evaluation (the test set by default)
        return evaluate(coh_eval, variables, setup.val_source, setup.eval_batch, bsh)

    def transfer_vars(results):  # the trained local CNNs and DNN, as the coherent model's variables
        return join(local_vars, results["dnn_variables"])

    def transfer_checkpoint(results):  # the transfer phase's initial state, saved (the bitwise record)
        store = run_dir.phase("transfer_init")
        if store.latest() is None:
            store.save(0, create_state(transfer_vars(results), setup.tx), {"what": "the transfer phase's initial state"})

    def transfer_init(results):  # its accuracy, scored once
        r = coh_evaluate(sharding.put_global(transfer_vars(results), sharding.replicated(setup.data_mesh)))
        return {"acc": float(r["acc"]), "top5": float(r["top5"])}

    def coherent_phase(name, epochs, lr, init):
        return Train(name, epochs, schedule_from_json(lr), with_rng(coh_step, phase_rng(config.seed, name)),
                     epoch_metrics(coh_evaluate), train_images,
                     init=init, plateau_patience=config.plateau_patience, optional=True, **monitored(setup))

    phases = [
        Compute("features", features, describe=lambda f: (
            f"local CNN outputs: train {f['train'].features.shape}, test {f['test'].features.shape} "
            f"({f['seconds']:.1f} s)")),
        Compute("aggregators", lambda r: aggregator_scores(r["features"]["test_logits"], r["features"]["test_labels"])),
        Deferred("dnn", dnn_phase),
        Compute("dnn_variables", lambda r: r["dnn"] if "dnn" in r else dnn_init),  # trained, or initial (0 epochs)
        coherent_phase("coherent", cfg.coherent_epochs, cfg.coherent_lr,
                       lambda r: global_state(setup, init_variables(coh, k_coh, (1, *setup.image_shape)))),
    ]
    if cfg.transfer_epochs > 0:
        phases += [Compute("transfer_checkpoint", transfer_checkpoint),
                   Compute("transfer_init", transfer_init, cache=True),
                   coherent_phase("transfer", cfg.transfer_epochs, cfg.transfer_lr,
                                  lambda r: global_state(setup, transfer_vars(r)))]
    return phases


def run_cnn_dnn(config: Config, cfg: CNNDNNConfig, run_dir, *, restart: bool = False, progress: bool = True,
                data_path=None, data_dir=None, num_devices: int | None = None, log=print,
                setup: Setup | None = None) -> dict:
    """Run (or resume) every phase; returns the summary (also ``<run_dir>/cnn_dnn/summary.json``)."""
    check_task(config)
    run_dir = Path(run_dir)
    main = jax.process_index() == 0
    log = log if main else (lambda *a, **k: None)
    setup = setup or build_setup(config, data_path=data_path, data_dir=data_dir, num_devices=num_devices)
    check_task(config, setup.held_out)
    steps = Steps(setup)

    with run_lock(run_dir):  # the whole run (its Algorithm-1 part takes the same lock again)
        # ---- 1. local CNNs (= SNets), the global CNN (GNet-R) and the Gu et al. composed network
        result = run_algorithm1(config, run_dir, restart=restart, progress=progress, log=log, setup=setup, steps=steps)
        a1, local_vars = result.summary, result.snets  # the trained local CNNs, stacked on axis 0, in memory

        # ---- 2-6. features, aggregators, DNN, coherent, transfer
        rd = RunDir(run_dir / "cnn_dnn", {"config": config.to_json(), "cnn_dnn": cfg.to_json()}, restart=restart,
                    defaults={"config": Config.defaults_json()})
        if restart and main:  # also where this configuration has no transfer phase (the runner forgets only its own)
            (rd.path / "transfer_init.json").unlink(missing_ok=True)
        phases = cnn_dnn_phases(setup, cfg, local_vars, a1["strategy"]["strategy"], rd, steps)
        results, histories = run_phases(phases, rd, restart=restart, progress=progress, log=log)

        summary = summarize(config, cfg, setup, a1, histories, results["aggregators"], results.get("transfer_init"),
                            results["features"]["seconds"], local_vars, results["dnn_variables"])
        if main:
            write_json(rd.path / "summary.json", summary)
            log(summary_table(summary))
    return summary


def check_task(config: Config, held_out: bool = False) -> None:
    """The CNN-DNN is for classification: its local outputs are class probabilities and its
    aggregators class votes; any other ``config.task`` is a one-line error (before anything runs).
    It validates on the test set, as the paper does, and reports every number there: a held-out
    validation split (``val_fraction``, ``val=``) is a one-line error too, not yet supported."""
    if config.task != "classification":
        raise ValueError(f"task={config.task!r}: the CNN-DNN aggregates the local CNNs' class probabilities (average, "
                         "vote, DNN), so it trains task='classification' only; run Algorithm 1 "
                         "(dcnn_dd.train.run_algorithm1) for this task")
    if held_out or config.val_fraction > 0:
        raise ValueError(f"val_fraction={config.val_fraction}: the CNN-DNN validates on the test set (the paper's "
                         "protocol) and reports its aggregators there; a held-out validation split is not supported "
                         "yet: set val_fraction=0 (Algorithm 1 alone, dcnn_dd.train.run_algorithm1, takes one)")


def _last(h, key="val_acc"):
    return h[-1][key] if h else None


def summarize(config, cfg, setup, a1, histories, aggs, transfer_init, t_features, local_vars, dnn_vars) -> dict:
    dnn_h, coh_h, tr_h = (histories.get(p, []) for p in PHASES)
    t_local, t_dnn = a1["time_subnets_s"], (_last(dnn_h, "elapsed_s") or 0.0)
    local_params = count_params(local_vars)
    return {
        "K": config.K, "grid": repr(setup.grid), "sub_shape": list(setup.grid.sub_shape),
        "acc": {
            "local": a1["snet_acc"],
            "dnn": _last(dnn_h), "average": aggs["average"]["acc"], "vote": aggs["vote"]["acc"],
            "logit_sum": aggs["logit_sum"]["acc"], "composed": a1["gnet_t_init_acc"],
            "coherent": _last(coh_h), "transfer_init": None if transfer_init is None else transfer_init["acc"],
            "transfer": _last(tr_h), "global": a1.get("gnet_r_trained_acc"),
        },
        "top5": {
            "local": a1.get("snet_top5"), "dnn": _last(dnn_h, "val_top5"), "average": aggs["average"]["top5"],
            "logit_sum": aggs["logit_sum"]["top5"], "coherent": _last(coh_h, "val_top5"),
            "transfer": _last(tr_h, "val_top5"), "global": a1.get("gnet_r_trained_top5"),
        },
        "vote_tied_fraction": aggs["vote"]["tied_fraction"],
        "time_s": {
            "local": t_local, "features": t_features, "dnn": t_dnn, "coherent": _last(coh_h, "elapsed_s"),
            "transfer": _last(tr_h, "elapsed_s"), "global": a1.get("time_gnet_r_s"), "compose": a1["time_compose_s"],
        },
        "pipeline_time_s": {
            "cnn_dnn (local + features + dnn)": t_local + t_features + t_dnn,
            "transfer (local + features + dnn + transfer)": (t_local + t_features + t_dnn
                                                             + (_last(tr_h, "elapsed_s") or 0.0)) if tr_h else None,
        },
        "params": {"global": count_params(jax.eval_shape(setup.global_init, jax.random.PRNGKey(0))),
                   "local_each": local_params // config.K, "local_all": local_params,
                   "dnn": count_params(dnn_vars), "dnn_hidden": list(dnn_model(setup, cfg).widths(config.K))},
        "epochs": {"local": config.snet_epochs, "dnn": cfg.dnn_epochs, "coherent": cfg.coherent_epochs,
                   "transfer": cfg.transfer_epochs, "global": config.gnet_r_epochs},
        "strategy": a1["strategy"], "inner": cfg.inner, "backend": jax.default_backend(),
        "devices": len(jax.devices()), "processes": jax.process_count(),
        "histories": histories,
    }


def summary_table(s: dict) -> str:
    def f(v):
        if v is None:
            return "-"
        return " ".join(f"{x:.4f}" for x in v) if isinstance(v, list) else f"{v:.4f}"

    a, t = s["acc"], s["time_s"]
    rows = [("local CNNs", f(a["local"]), t["local"]), ("DNN (frozen local outputs)", f(a["dnn"]), t["dnn"]),
            ("average", f(a["average"]), None), ("majority vote", f(a["vote"]), None),
            ("logit sum", f(a["logit_sum"]), None), ("Gu et al. composed (untrained)", f(a["composed"]), t["compose"]),
            ("coherent CNN-DNN (random init)", f(a["coherent"]), t["coherent"]),
            ("transfer: before / after", f"{f(a['transfer_init'])} / {f(a['transfer'])}", t["transfer"]),
            ("global CNN", f(a["global"]), t["global"])]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{n:<{w}}  {v:<40} {'' if ts is None else f'{ts:.1f} s'}" for n, v, ts in rows)
