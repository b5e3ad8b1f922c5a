"""The paper's architectures (Gu, Zhang, Liu, Cai, ETNA 2022), as Flax Linen modules.

All models are channels-last (NHWC), take ``__call__(x, train=False)`` and use
``nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)`` where they normalise.

* :class:`VGG16` - Table 2.1 / Fig. 2.1 (13 same-padded 3x3 convs, 5 max-pools, flatten, 3 FCs).
* :class:`CifarResNet` - the 6n+2 ResNets of Section 3.1.1 (ResNet32/56/110, widths 64/128/256).
* :class:`BottleneckResNet` - ImageNet ResNet v1 with bottlenecks (ResNet50/101, Table 2.2, and
  with a 1024-wide hidden FC for Food101, Section 3.1.2 / Table 3.4); :func:`ResNet50`,
  :func:`ResNet101`.
* :class:`DogsCatsCNN` - the 11-layer DCNN of Section 3.1.3 (feature maps and CAM).

Every model has ``subnet(K)``: the same class with every *hidden* width divided by K, (2.7)-(2.8);
the input channels and the number of classes are unchanged.  The global and the sub-network have
parameter trees of identical structure (same module names); only the leaf shapes differ.
Widths that K does not divide raise ``ValueError`` naming the width.

Parameter-count conventions (see :mod:`dcnn_dd.complexity`): the paper's tables were produced with
two different counting conventions.  Table 2.2 (ResNet50 25.56M, ResNet101 44.55M) counts like
torchvision: convolutions without bias, BatchNorm scale+bias only -> ``conv_bias=False`` and
``count_params(v)``.  Table 3.4 (ResNet50 25.79M, ResNet101 44.86M with Dense(1024)+Dense(101))
counts like Keras' ``model.count_params()``: convolutions *with* bias and the BatchNorm moving
mean/variance counted as parameters -> ``conv_bias=True`` and
``count_params(v, include=("params", "batch_stats"))``.  Table 3.1 (CIFAR ResNets) is the same
Keras convention, see :class:`CifarResNet`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dcnn_dd.fields import Window
from dcnn_dd.models.plain import divide_widths
from dcnn_dd.models.pooling import POOL_INPUT, average_pool

__all__ = [
    "VGG16", "CifarResNet", "BottleneckResNet", "ResNet50", "ResNet101", "DogsCatsCNN",
    "class_activation_map", "divide",
]

divide = divide_widths  # one rule for (2.7)-(2.8) widths, shared with models.plain


def _bn(train: bool, name: str, dtype=None) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


# --------------------------------------------------------------------------------------- VGG16
class VGG16(nn.Module):
    """VGG16 (configuration D), Table 2.1.

    Stages of (2, 2, 3, 3, 3) same-padded 3x3 convolutions (+ReLU) with ``widths`` channels, a
    2x2/2 max-pool after each stage, flatten (``x.reshape((B, -1))``), two FC+ReLU layers of
    ``fc`` units and the ``num_classes`` classifier.  Names: ``conv{s}_{i}`` (stage s, conv i,
    1-based as in the VGG paper), ``fc1``, ``fc2``, ``classifier``.  At input 224 the flatten sees
    7x7x512; at the K=4 sub-network's 112 it sees 3x3x128 (112/32 rounded down), so the first FC's
    kernel adapts to its input as in (2.7).  No dropout (not part of the complexity tables).
    """

    widths: Sequence[int] = (64, 128, 256, 512, 512)
    fc: Sequence[int] = (4096, 4096)
    num_classes: int = 1000
    convs_per_stage: Sequence[int] = (2, 2, 3, 3, 3)
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    def subnet(self, K: int) -> VGG16:  # noqa: N803
        return dataclasses.replace(self, widths=divide(self.widths, K, "widths"), fc=divide(self.fc, K, "fc"))

    @nn.compact
    def __call__(self, x, train: bool = False):
        if len(self.widths) != len(self.convs_per_stage):
            raise ValueError(f"widths {tuple(self.widths)} and convs_per_stage {tuple(self.convs_per_stage)} differ in length")
        for s, (w, n) in enumerate(zip(self.widths, self.convs_per_stage), start=1):
            for i in range(1, n + 1):
                x = nn.relu(nn.Conv(w, (3, 3), padding="SAME", dtype=self.dtype, name=f"conv{s}_{i}")(x))
            x = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")
        x = x.reshape((x.shape[0], -1))
        for j, f in enumerate(self.fc, start=1):
            x = nn.relu(nn.Dense(f, dtype=self.dtype, name=f"fc{j}")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


# ------------------------------------------------------------------------------ CIFAR ResNets
class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a shortcut over the pair (He et al. 2016, Sec. 4.2)."""

    features: int
    stride: int = 1
    shortcut: str = "projection"  # or "A" (subsample + zero-pad channels)
    conv_bias: bool = True
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        s = self.stride
        y = nn.Conv(self.features, (3, 3), (s, s), padding=((1, 1), (1, 1)), use_bias=self.conv_bias, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_bn(train, "bn1", self.dtype)(y))
        y = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=self.conv_bias, dtype=self.dtype, name="conv2")(y)
        y = _bn(train, "bn2", self.dtype)(y)
        if s != 1 or x.shape[-1] != self.features:
            if self.shortcut == "projection":
                x = nn.Conv(self.features, (1, 1), (s, s), padding="VALID", use_bias=self.conv_bias, dtype=self.dtype, name="proj_conv")(x)
                x = _bn(train, "proj_bn", self.dtype)(x)
            elif self.shortcut == "A":
                x = x[:, ::s, ::s, :]
                extra = self.features - x.shape[-1]
                if extra < 0:
                    raise ValueError("shortcut='A' cannot reduce the number of channels")
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
            else:
                raise ValueError(f"shortcut={self.shortcut!r}: choose 'projection' or 'A'")
        return nn.relu(x + y)


class CifarResNet(nn.Module):
    """The 6n+2 ResNets of Section 3.1.1 (depth 32, 56, 110 for n = 5, 9, 18).

    A 3x3 conv+BN+ReLU stem with ``widths[0]`` channels, then three stages of n basic blocks
    (2n 3x3 convs each, shortcut over every pair) with ``widths`` channels at feature sizes
    {32, 16, 8} (stride 2 at the first block of stages 2 and 3), global average pooling and a
    ``num_classes`` FC.  Names: ``conv0``/``bn0``, ``stage{s}_block{b}`` (s = 1..3, b = 0..n-1) each
    with ``conv1``/``bn1``/``conv2``/``bn2`` and, at stage transitions, ``proj_conv``/``proj_bn``;
    ``classifier``.

    Defaults reproduce Table 3.1's parameter counts: **1x1 projection conv + BN shortcuts at the
    two stage transitions** (option B of He et al.), **convolutions with bias**, and the count
    including the BatchNorm moving statistics (Keras ``count_params``,
    ``count_params(v, include=("params", "batch_stats"))``): ResNet32 7,442,698 / sub-network
    470,602 (paper 7.44M / 0.47M), ResNet56 13,653,770 / 862,154 (13.65M / 0.86M), ResNet110
    27,628,682 / 1,743,146 (27.62M / 1.74M).  The paper's figures are these truncated to two
    decimals (ResNet110 would round to 27.63M); no combination of conv bias on/off, 0/2/4
    BatchNorm numbers per channel and option-A / projection shortcuts reproduces all six under
    rounding, and option A (``shortcut="A"``, parameter-free) gives 7.40M / 0.47M for ResNet32.
    """

    depth: int = 32
    widths: Sequence[int] = (64, 128, 256)
    num_classes: int = 10
    shortcut: str = "projection"
    conv_bias: bool = True
    pooling: str = "global"  # or "regional" (see dcnn_dd.models.pooling)
    pool_regions: tuple | None = None
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    def subnet(self, K: int) -> CifarResNet:  # noqa: N803
        return dataclasses.replace(self, widths=divide(self.widths, K, "widths"), pooling="global", pool_regions=None)

    @property
    def n(self) -> int:
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"depth={self.depth} is not of the form 6n+2")
        return (self.depth - 2) // 6

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = self.n
        x = nn.Conv(self.widths[0], (3, 3), padding=((1, 1), (1, 1)), use_bias=self.conv_bias, dtype=self.dtype, name="conv0")(x)
        x = nn.relu(_bn(train, "bn0", self.dtype)(x))
        for s, w in enumerate(self.widths, start=1):
            for b in range(n):
                stride = 2 if (s > 1 and b == 0) else 1
                x = BasicBlock(w, stride, self.shortcut, self.conv_bias, self.dtype, name=f"stage{s}_block{b}")(x, train)
        self.sow("intermediates", POOL_INPUT, x)
        x = average_pool(x, self.pooling, self.pool_regions)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


# ---------------------------------------------------------------------- ImageNet (bottleneck) ResNets
class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x ``expansion``) bottleneck with a projection shortcut when needed.

    ``stride_on`` = "1x1": the stride sits on the first 1x1 conv (original ResNet v1, Caffe and
    Keras ``applications.ResNet50``); "3x3": on the 3x3 conv (torchvision, "v1.5").  Parameter
    counts are identical; FLOPs differ (v1.5 has ~5% more).
    """

    features: int
    stride: int = 1
    expansion: int = 4
    conv_bias: bool = False
    stride_on: str = "1x1"
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        s = self.stride
        if self.stride_on not in ("1x1", "3x3"):
            raise ValueError(f"stride_on={self.stride_on!r}: choose '1x1' or '3x3'")
        s1, s3 = ((s, s), (1, 1)) if self.stride_on == "1x1" else ((1, 1), (s, s))
        out = self.features * self.expansion
        y = nn.Conv(self.features, (1, 1), s1, padding="VALID", use_bias=self.conv_bias, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_bn(train, "bn1", self.dtype)(y))
        y = nn.Conv(self.features, (3, 3), s3, padding=((1, 1), (1, 1)), use_bias=self.conv_bias, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(_bn(train, "bn2", self.dtype)(y))
        y = nn.Conv(out, (1, 1), padding="VALID", use_bias=self.conv_bias, dtype=self.dtype, name="conv3")(y)
        y = _bn(train, "bn3", self.dtype)(y)
        if s != 1 or x.shape[-1] != out:
            x = nn.Conv(out, (1, 1), (s, s), padding="VALID", use_bias=self.conv_bias, dtype=self.dtype, name="proj_conv")(x)
            x = _bn(train, "proj_bn", self.dtype)(x)
        return nn.relu(x + y)


class BottleneckResNet(nn.Module):
    """ImageNet ResNet v1 with bottleneck blocks (He et al. 2016), Sections 2.1.2 and 3.1.2.

    7x7/2 conv (``stem_width``) + BN + ReLU, 3x3/2 max-pool (padding 1), stages of
    ``stage_sizes`` bottlenecks with bottleneck widths ``widths`` (outputs ``expansion`` times
    wider; stride 2 at the first block of stages 2..4; projection 1x1 conv + BN shortcuts at the
    first block of every stage), global average pooling, an optional ``fc_hidden`` Dense+ReLU
    (1024 in Section 3.1.2 / Table 3.4) and the ``num_classes`` classifier.  Names: ``conv1``,
    ``bn1``, ``stage{s}_block{b}`` (s = 1..4), ``fc_hidden``, ``classifier``.

    ``conv_bias=False`` + ``count_params(v)`` is the torchvision convention of Table 2.2;
    ``conv_bias=True`` + ``count_params(v, include=("params", "batch_stats"))`` is the Keras
    convention of Table 3.4.  ``stride_on="1x1"`` (default) is the original v1 / Keras placement of
    the downsampling stride, which matches Table 3.4's FLOPs better; "3x3" gives torchvision's.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    widths: Sequence[int] = (64, 128, 256, 512)
    stem_width: int = 64
    expansion: int = 4
    fc_hidden: int | None = None
    num_classes: int = 1000
    conv_bias: bool = False
    stride_on: str = "1x1"
    pooling: str = "global"  # or "regional" (see dcnn_dd.models.pooling)
    pool_regions: tuple | None = None
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    def subnet(self, K: int) -> BottleneckResNet:  # noqa: N803
        return dataclasses.replace(
            self,
            pooling="global",
            pool_regions=None,
            widths=divide(self.widths, K, "widths"),
            stem_width=divide(self.stem_width, K, "stem_width"),
            fc_hidden=None if self.fc_hidden is None else divide(self.fc_hidden, K, "fc_hidden"),
        )

    @nn.compact
    def __call__(self, x, train: bool = False):
        if len(self.stage_sizes) != len(self.widths):
            raise ValueError(f"stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} differ in length")
        x = nn.Conv(self.stem_width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=self.conv_bias, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(_bn(train, "bn1", self.dtype)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for s, (n, w) in enumerate(zip(self.stage_sizes, self.widths), start=1):
            for b in range(n):
                stride = 2 if (s > 1 and b == 0) else 1
                x = Bottleneck(w, stride, self.expansion, self.conv_bias, self.stride_on, self.dtype,
                               name=f"stage{s}_block{b}")(x, train)
        self.sow("intermediates", POOL_INPUT, x)
        x = average_pool(x, self.pooling, self.pool_regions)
        if self.fc_hidden is not None:
            x = nn.relu(nn.Dense(self.fc_hidden, dtype=self.dtype, name="fc_hidden")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


def ResNet50(**kwargs) -> BottleneckResNet:  # noqa: N802
    """ResNet50: stage sizes (3, 4, 6, 3).  E.g. Table 3.4's ``ResNet50(fc_hidden=1024, num_classes=101, conv_bias=True)``."""
    return BottleneckResNet(stage_sizes=(3, 4, 6, 3), **kwargs)


def ResNet101(**kwargs) -> BottleneckResNet:  # noqa: N802
    """ResNet101: stage sizes (3, 4, 23, 3)."""
    return BottleneckResNet(stage_sizes=(3, 4, 23, 3), **kwargs)


# ---------------------------------------------------------------------------- Dogs vs. Cats DCNN
class DogsCatsCNN(nn.Module):
    """The 11-layer DCNN of Section 3.1.3: 10 same-padded 3x3 conv+ReLU layers ``conv1``..``conv10``
    with a 2x2/2 max-pool after every 2 convs, global average pooling and a ``num_classes`` FC
    (``fc``).  The paper gives no widths; the default doubles every two convs from 32 to 512.
    There is no pool after the last pair (4 pools; at 224 the last conv's map is 14x14), so the
    last conv's map feeds the global average pooling directly, as CAM (Zhou et al. 2016) needs:
    ``mean(cam(v, x, c)) + fc bias[c]`` is the logit of class c.

    Feature maps: after each conv+ReLU the map is sown as ``intermediates/layer{i}`` (i = 1..10,
    before the pooling), so the paper's Fig. 3.7 layers are::

        _, st = model.apply(v, x, mutable=["intermediates"])
        maps = {i: st["intermediates"][f"layer{i}"][0] for i in (1, 3, 5)}

    or ``model.feature_maps(v, x, layers=(1, 3, 5))``.  (``capture_intermediates=True`` also works:
    the convs are named ``conv{i}``, but those are the pre-ReLU outputs.)  For CAM (Zhou et al.
    2016), ``layer10`` is the last conv's feature map and ``v["params"]["fc"]["kernel"]`` the
    GAP->class weights; ``model.cam(v, x, cls)`` / :func:`class_activation_map` combine them.
    """

    widths: Sequence[int] = (32, 32, 64, 64, 128, 128, 256, 256, 512, 512)
    num_classes: int = 2
    pool_every: int = 2
    batchnorm: bool = False
    dtype: Any = None  # the compute dtype (e.g. jnp.bfloat16; None: float32); parameters stay float32

    def subnet(self, K: int) -> DogsCatsCNN:  # noqa: N803
        return dataclasses.replace(self, widths=divide(self.widths, K, "widths"))

    def spatial_layers(self) -> list[tuple[str, list[Window]]]:
        """``("layer{i}", windows from the input to conv i's output)`` for i = 1..10: the SAME-padded
        3x3 convs and the 2x2/2 VALID max-pools before it (the map sown as ``layer{i}`` is taken
        before the pool that may follow conv i).  With :func:`dcnn_dd.fields.activation_field`
        this gives the exact subdomain Omega of (2.15) at every sown layer (Fig. 3.7)."""
        conv, pool = Window(3, 1, "SAME"), Window(2, 2, "VALID")
        out, ws = [], []
        for i in range(1, len(self.widths) + 1):
            ws = ws + [conv]
            out.append((f"layer{i}", list(ws)))
            if i % self.pool_every == 0 and i < len(self.widths):
                ws = ws + [pool]
        return out

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, w in enumerate(self.widths, start=1):
            x = nn.Conv(w, (3, 3), padding="SAME", dtype=self.dtype, name=f"conv{i}")(x)
            if self.batchnorm:
                x = _bn(train, f"bn{i}", self.dtype)(x)
            x = nn.relu(x)
            self.sow("intermediates", f"layer{i}", x)
            if i % self.pool_every == 0 and i < len(self.widths):
                x = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)

    def feature_maps(self, variables, x, layers=(1, 3, 5)):
        """{i: feature map after conv i + ReLU} for the given 1-based layers, and the logits."""
        logits, st = self.apply(variables, x, mutable=["intermediates"])
        inter = st["intermediates"]
        return {i: inter[f"layer{i}"][0] for i in layers}, logits

    def cam(self, variables, x, cls=None):
        """Class activation maps M_c = sum_n w_{n,c} X_n at the last conv's resolution, (B, h, w),
        from the last conv's maps X and the FC kernel w; ``cls``: class index (int or (B,) array),
        default the predicted class.  Upsample to the input size for display."""
        maps, logits = self.feature_maps(variables, x, layers=(len(self.widths),))
        if cls is None:
            cls = jnp.argmax(logits, axis=-1)
        return class_activation_map(maps[len(self.widths)], variables["params"]["fc"]["kernel"], cls)


def class_activation_map(fmap, kernel, cls):
    """M = sum_n kernel[n, cls] * fmap[..., n] for feature maps (B, h, w, C) and a GAP->class
    kernel (C, classes); ``cls`` an int or a (B,) array of class indices."""
    cls = jnp.broadcast_to(jnp.asarray(cls), fmap.shape[:1])
    w = kernel.T[cls]  # (B, C)
    return jnp.einsum("bhwc,bc->bhw", fmap, w)
