"""The configuration of an Algorithm-1 run, as plain JSON-able data.

Everything that changes the trained parameters is in :class:`Config` and is stored in the run
directory; re-running with a different configuration is an error (resume needs the same one).
Settings that do not (progress bars, the data path, the run directory) are arguments of
:func:`dcnn_dd.train.run_algorithm1` instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers

from dcnn_dd.grid import Grid, paper_grid
from dcnn_dd.models.registry import MODELS, build_model, register_model  # noqa: F401 (re-exported)
from dcnn_dd.train.schedules import schedule_from_json


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of Algorithm 1 (SNets -> compose -> GNet-T) and its GNet-R baseline.

    ``*_lr`` are :class:`~dcnn_dd.train.schedules.Piecewise` in JSON form (``{"base": 1e-3,
    "milestones": [[80, 0.1], ...]}``) or a constant, or a per-step schedule (``{"name":
    "warmup_cosine", "base": 1e-3, "warmup_steps": 50, "end": 0.0}``, ``"cosine"``, ``"warmup"``;
    :func:`~dcnn_dd.train.schedules.schedule_from_json`).  ``optimizer``: any optax optimiser by
    name, ``"adam"`` (the paper's) or ``{"name": "adamw", "weight_decay": 1e-4}``
    (:mod:`~dcnn_dd.train.optimizers`); ``snet_optimizer``, ``gnet_t_optimizer``,
    ``gnet_r_optimizer``: a phase's own (None: ``optimizer``).  ``extra_epochs``: GNet-T may
    train that many epochs beyond ``gnet_t_epochs`` until its validation accuracy reaches GNet-R's
    final one (for ``time_to_gnet_r_acc_s``); the paper's comparison uses ``gnet_t_epochs``.
    ``compose_opt_state``: GNet-T's optimiser state is the sub-networks' composed like their
    weights (beyond the paper; default: a fresh optimiser, as in the paper; the SNets and GNet-T
    must then use the same optimiser).  ``subnet_layout``: the devices of the sub-network phase
    under ``strategy="shard_map"`` (:func:`dcnn_dd.sharding.subnet_mesh`): ``"subnet"``, one
    sub-network per device (min(K, D) devices); ``"subnet_data"``, K rows of D/K devices, each
    sub-network data-parallel over its row (K dividing D, D >= 2K); ``"auto"``, the second where it
    applies.  ``dtype``: the compute dtype, ``"float32"`` (default) or
    ``"bfloat16"`` (mixed precision: the layers compute in bfloat16; parameters, optimiser state,
    loss and metrics stay float32; the plan is derived and checked on the float32 twin, so a
    bfloat16 network composes exactly as its float32 one; the model's factory must take
    ``dtype``, as every model of the zoo does).  Regional pooling for GAP networks is a model option:
    ``model={"name": "cifar_resnet", ..., "pooling": "regional"}`` (:mod:`dcnn_dd.models.pooling`).
    Validation is the test split, as in the paper (Section 3: "10k validation images"), unless
    ``val_fraction`` > 0: then that fraction of the (``train_size``-cut) training data, chosen by a
    permutation seeded with ``val_seed`` (independent of ``seed``, so that seeds compare on one
    split), is held out; it drives the plateau rule, GNet-T's stopping rule and the
    time-to-target, and the test split is evaluated once per trained network, after its phase.
    ``dataset``: a built-in name or one registered with :func:`dcnn_dd.data.register_dataset`;
    when sources are passed to :func:`~dcnn_dd.train.run_algorithm1`, only a label.
    ``task``: what is learned (:mod:`dcnn_dd.train.tasks`: the loss, the ``val_<metric>`` records
    and the composed head, e.g. ``'regression'``: MSE, the mean of the sub-networks (2.22));
    ``monitor`` / ``monitor_mode``: the validation metric that drives the plateau rule, GNet-T's
    stopping rule and the time-to-target, and its direction (``auto``: the task's, e.g.
    ``val_acc``/max for classification, ``val_loss``/min for regression)."""

    dataset: str = "fashion_mnist_idx"
    train_size: int | None = None  # first n training samples (None: all)
    test_size: int | None = None
    val_fraction: float = 0.0  # held-out validation share of the training data (0: the test split validates)
    val_seed: int = 0  # the permutation that holds it out
    image_size: tuple[int, int] | None = None  # resize (TFDS datasets with variable-size images)
    model: dict = dataclasses.field(default_factory=lambda: {"name": "plain"})
    K: int = 4  # noqa: N815
    grid: dict = dataclasses.field(default_factory=lambda: {"parts": 2, "size": 16})
    augment: str = "none"
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: full passes; Section 3.1.2: 300 batches per epoch
    eval_batch_size: int = 1000
    snet_epochs: int = 2
    gnet_t_epochs: int = 1
    gnet_r_epochs: int = 3
    extra_epochs: int = 0
    snet_lr: object = 1e-3
    gnet_t_lr: object = 1e-3
    gnet_r_lr: object = 1e-3
    plateau_patience: int | None = 5  # None: no plateau rule
    compose_opt_state: bool = False  # GNet-T starts from the SNets' composed Adam moments (train.state.compose_opt_state)
    dtype: str = "float32"  # the compute dtype: float32 | bfloat16 (parameters, optimiser state and loss stay float32)
    strategy: str = "auto"  # vmap | sequential | shard_map | auto
    subnet_layout: str = "auto"  # shard_map's mesh: subnet (K devices at most) | subnet_data (K x D/K) | auto
    inner: str = "sequential"  # per-device strategy inside shard_map
    seed: int = 0
    # ---- the task (dcnn_dd.train.tasks): loss, metrics, composed head; the monitored validation metric
    task: str = "classification"  # classification | regression | multilabel | a name of register_task
    monitor: str = "auto"  # the val_<metric> of the plateau rule, GNet-T's stopping rule, the time-to-target
    monitor_mode: str = "auto"  # max | min | auto (the metric's declared direction)
    # ---- optimisers (train.optimizers): a name or {"name": ..., **kwargs}; None: `optimizer`
    optimizer: object = "adam"
    snet_optimizer: object = None
    gnet_t_optimizer: object = None
    gnet_r_optimizer: object = None

    def __post_init__(self):
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))
        self.validate()

    def validate(self) -> None:
        """Every field, before anything is trained or written: a ``ValueError`` naming the field
        (a learning-rate schedule with a typo fails here, not when its phase starts)."""
        validate(self)

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def defaults_json(cls) -> dict:
        """Every field's default, as :meth:`to_json` writes it (a run directory written before a
        field existed resumes when the field holds its default)."""
        return json.loads(json.dumps({f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING
                                      else f.default for f in dataclasses.fields(cls)}))

    @classmethod
    def from_json(cls, d: dict) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    def optimizer_for(self, phase: str):
        """The optimiser spec of ``phase`` (``"snets"``, ``"gnet_t"``, ``"gnet_r"``: its own field
        if set; any other phase: ``optimizer``)."""
        field = PHASE_OPTIMIZERS.get(phase)
        own = getattr(self, field) if field else None
        return self.optimizer if own is None else own


# the phases with an optimiser field of their own
PHASE_OPTIMIZERS = {"snets": "snet_optimizer", "gnet_t": "gnet_t_optimizer", "gnet_r": "gnet_r_optimizer"}


def build_grid(spec: dict, image_shape) -> Grid:
    """``{"paper": "cifar-overlap"}``, ``{"parts": 2, "size": 16}`` (or ``overlap``/``crop``), or
    ``{"origins": [[0, 0], ...], "size": [16, 16]}`` for images of ``image_shape`` (H, W, C)."""
    check_grid_spec(spec)
    spec = dict(spec)
    spatial = tuple(image_shape[:-1])
    if "paper" in spec:
        grid = paper_grid(spec["paper"])
    elif "origins" in spec:
        grid = Grid.from_origins(spatial, spec["origins"], spec["size"])
    else:
        grid = Grid.uniform(spatial, spec.pop("parts"), **spec)
    if grid.shape != spatial:
        raise ValueError(f"grid {spec} is for inputs {grid.shape}, the images are {spatial}")
    return grid


# ---------------------------------------------------------------------------- validation
AUGMENT_NAMES = ("none", "cifar", "food101", "fashion")
DTYPES = ("float32", "bfloat16")  # Config.dtype: the compute dtype (mixed precision: float32 parameters)
GRID_KEYS = {"paper": {"paper"}, "origins": {"origins", "size"}, "parts": {"parts", "size", "overlap", "crop"}}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_int(c: Config, name: str, minimum: int, optional: bool = False) -> None:
    v = getattr(c, name)
    if optional and v is None:
        return
    if not _is_int(v) or v < minimum:
        raise ValueError(f"{name}={v!r}: expected an integer >= {minimum}" + (" or None" if optional else ""))


def _ints(v, what: str, minimum: int) -> tuple[int, ...]:
    """An int or a non-empty list of ints, each >= ``minimum``, as a tuple."""
    vals = [v] if not isinstance(v, (list, tuple)) else list(v)
    if not vals or not all(_is_int(x) and x >= minimum for x in vals):
        raise ValueError(f"{what}={v!r}: expected an integer >= {minimum} or a list of them (one per spatial axis)")
    return tuple(int(x) for x in vals)


def check_grid_spec(spec, K: int | None = None) -> None:  # noqa: N803
    """The grid spec of :func:`build_grid`, checked without the images: its keys, their types, and
    that it has ``K`` sub-images where that is known without the image shape (an int ``parts`` is
    taken per axis of a 2-d image)."""
    if not isinstance(spec, dict):
        raise ValueError(f"grid={spec!r}: give a dict, e.g. {{'parts': 2, 'size': 16}}")
    kind = next((k for k in ("paper", "origins", "parts") if k in spec), None)
    if kind is None:
        raise ValueError(f"grid {spec}: give 'parts' (with 'size', 'overlap' or 'crop'), 'origins' and 'size', "
                         "or 'paper'")
    unknown = set(spec) - GRID_KEYS[kind]
    if unknown:
        raise ValueError(f"grid {spec}: unknown key(s) {sorted(unknown)} for a {kind!r} grid; its keys are "
                         f"{sorted(GRID_KEYS[kind])}")
    n = None
    if kind == "paper":
        n = paper_grid(spec["paper"]).K if isinstance(spec["paper"], str) else paper_grid(repr(spec["paper"])).K
    elif kind == "origins":
        if "size" not in spec:
            raise ValueError(f"grid {spec}: an 'origins' grid needs 'size'")
        origins = spec["origins"]
        if not isinstance(origins, (list, tuple)) or not origins:
            raise ValueError(f"grid {spec}: 'origins' must be a non-empty list of origins")
        ndims = {len(_ints(o, "grid origin", 0)) for o in origins}
        if len(ndims) != 1:
            raise ValueError(f"grid {spec}: the origins have different numbers of axes")
        _ints(spec["size"], "grid size", 1)
        n = len(origins)
    else:
        parts = _ints(spec["parts"], "grid parts", 1)
        if "size" in spec and "overlap" in spec:
            raise ValueError(f"grid {spec}: give either 'size' or 'overlap', not both")
        if "size" in spec:
            _ints(spec["size"], "grid size", 1)
        if "overlap" in spec:
            _ints(spec["overlap"], "grid overlap", 0)
        if "crop" in spec:
            _ints(spec["crop"], "grid crop", 0)
        n = parts[0] ** 2 if not isinstance(spec["parts"], (list, tuple)) else math.prod(parts)
    if K is not None and n != K:
        raise ValueError(f"grid {spec} has {n} sub-images, K={K}")


def check_optimizers(c: Config) -> None:
    """The optimiser fields: each builds and steps (:func:`~dcnn_dd.train.optimizers.check_optimizer`);
    with ``compose_opt_state`` the SNets and GNet-T use the same one and its state composes
    (:func:`~dcnn_dd.train.state.check_composable`, on a tiny parameter tree)."""
    from dcnn_dd.train.optimizers import TINY_PARAMS, check_optimizer, make_tx, same_optimizer

    check_optimizer(c.optimizer, "optimizer")
    for field in PHASE_OPTIMIZERS.values():
        if getattr(c, field) is not None:
            check_optimizer(getattr(c, field), field)
    if not c.compose_opt_state:
        return
    snets, gnet_t = c.optimizer_for("snets"), c.optimizer_for("gnet_t")
    if not same_optimizer(snets, gnet_t):
        raise ValueError(f"compose_opt_state=True: the SNets ({snets!r}) and GNet-T ({gnet_t!r}) use different "
                         "optimisers, so the SNets' state cannot start GNet-T's; give them the same one or set "
                         "compose_opt_state=False")
    if not same_optimizer(snets, "adam"):  # Adam composes (its moments are shaped like the weights)
        from dcnn_dd.train.state import check_composable

        check_composable(make_tx(snets), TINY_PARAMS, f"{snets!r}")


def validate(c: Config) -> None:
    if not isinstance(c.dataset, str) or not c.dataset:
        raise ValueError(f"dataset={c.dataset!r}: give a dataset name")
    _check_int(c, "train_size", 1, optional=True)
    _check_int(c, "test_size", 1, optional=True)
    f = c.val_fraction
    if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 <= f < 1:
        raise ValueError(f"val_fraction={f!r}: expected a number in [0, 1) (0: the test split validates, the paper's "
                         "protocol)")
    _check_int(c, "val_seed", 0)
    if c.image_size is not None and (len(c.image_size) != 2 or not all(_is_int(v) and v >= 1 for v in c.image_size)):
        raise ValueError(f"image_size={c.image_size!r}: expected None or (height, width), positive integers")
    _check_int(c, "K", 1)
    for name in ("batch_size", "eval_batch_size"):
        _check_int(c, name, 1)
    _check_int(c, "steps_per_epoch", 1, optional=True)
    for name in ("snet_epochs", "gnet_t_epochs", "gnet_r_epochs", "extra_epochs"):
        _check_int(c, name, 0)
    _check_int(c, "plateau_patience", 1, optional=True)
    _check_int(c, "seed", 0)
    for name in ("snet_lr", "gnet_t_lr", "gnet_r_lr"):
        try:
            schedule_from_json(getattr(c, name))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    gnet_t_sched = schedule_from_json(c.gnet_t_lr)
    if c.extra_epochs > 0 and getattr(gnet_t_sched, "end", None) == 0:
        raise ValueError(f"extra_epochs={c.extra_epochs} with gnet_t_lr={c.gnet_t_lr}: the extra epochs run at the "
                         "schedule's end rate, 0, and would change nothing; give the schedule an 'end' > 0, or "
                         "extra_epochs=0")
    if c.augment not in AUGMENT_NAMES:
        raise ValueError(f"augment={c.augment!r}: choose one of {list(AUGMENT_NAMES)}")
    from dcnn_dd.sharding import STRATEGIES

    if c.strategy not in (*STRATEGIES, "auto"):
        raise ValueError(f"strategy={c.strategy!r}: choose one of {list(STRATEGIES)} or 'auto'")
    from dcnn_dd.sharding import SUBNET_LAYOUTS

    if c.subnet_layout not in SUBNET_LAYOUTS:
        raise ValueError(f"subnet_layout={c.subnet_layout!r}: choose one of {list(SUBNET_LAYOUTS)}")
    if c.inner not in ("vmap", "sequential"):
        raise ValueError(f"inner={c.inner!r}: choose 'vmap' or 'sequential'")
    if not isinstance(c.compose_opt_state, bool):
        raise ValueError(f"compose_opt_state={c.compose_opt_state!r}: give true or false")
    check_optimizers(c)
    try:
        check_grid_spec(c.grid, c.K)
    except ValueError as e:
        raise ValueError(f"grid: {e}") from None
    from dcnn_dd.train.tasks import get_task

    get_task(c.task).monitored(c.monitor, c.monitor_mode)  # unknown task, metric or direction
    if not isinstance(c.model, dict) or not isinstance(c.model.get("name"), str):
        raise ValueError(f"model={c.model!r}: give a dict with a 'name', e.g. {{'name': 'plain'}}")
    if c.dtype not in DTYPES:
        raise ValueError(f"dtype={c.dtype!r}: choose one of {list(DTYPES)} (the compute dtype; parameters, optimiser "
                         "state and loss stay float32)")
    model = build_model(c.model, 2, c.dtype)  # unknown names and arguments (num_classes is the dataset's); a dtype
    try:
        model.subnet(c.K)
    except (ValueError, TypeError) as e:
        raise ValueError(f"model {c.model}: its sub-network for K={c.K}: {e}") from None
