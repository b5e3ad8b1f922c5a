"""Per-layer feature maps and class activation maps (CAM) of a model, as jitted functions.

* :func:`feature_maps_fn` - ``(variables, x) -> {layer: feature map}`` for the layers a model
  records with ``self.sow("intermediates", "layer<i>", x)`` (:class:`~dcnn_dd.models.zoo.DogsCatsCNN`,
  :class:`~dcnn_dd.models.PlainCNN`; any Flax module that sows its spatial layers under the names of
  its ``spatial_layers()``).  Theorem 2.1 (1) on these maps: :func:`dcnn_dd.theorems.restricted_feature_maps`.
* :func:`cam_fn` - ``(variables, x, classes) -> (CAM, p(classes))``: the class activation maps of
  Zhou et al. (2016), ``M_c = sum_n w_{n,c} X_n`` of the last conv's maps X and the GAP -> class
  kernel w (:func:`dcnn_dd.models.zoo.class_activation_map`), with the softmax probability of the
  same classes from one forward pass.
* :func:`upsample_normalized` - maps at a layer's resolution brought to the image size for display
  (bilinear, min-max normalised per map), as Figs. 3.7-3.8 of Gu et al. show them.

The jitted functions are cached per model (a Flax module is hashable): a 10-conv network run op by
op takes seconds a call on a CPU, compiled once it takes milliseconds.

    from dcnn_dd.activation_maps import cam_fn, feature_maps_fn, upsample_normalized
    maps = feature_maps_fn(model, (1, 3, 5))(variables, x)       # {1: (B, h1, w1, C1), 3: ..., 5: ...}
    cam, p = cam_fn(model)(variables, x, labels)                 # (B, h, w), (B,)
    shown = upsample_normalized(np.asarray(cam), x.shape[1:3])   # (B, H, W) in [0, 1]
"""

from __future__ import annotations

import functools

import numpy as np


def layer_name(layer) -> str:
    """The name a layer is sown under: ``"layer<i>"`` for an int ``i``, a string as it is."""
    return layer if isinstance(layer, str) else f"layer{layer}"


@functools.lru_cache(maxsize=16)
def feature_maps_fn(model, layers):
    """jitted ``(variables, x) -> {layer: feature map}`` for the given layers (a tuple of ints ``i``
    for the maps sown as ``intermediates/layer<i>``, or of names), from one forward pass
    (``model.apply(variables, x, mutable=["intermediates"])``).  For DogsCatsCNN this is
    ``model.feature_maps(variables, x, layers)[0]``: the maps after conv i and its ReLU."""
    import jax

    layers = tuple(layers)

    @jax.jit
    def maps(v, x):  # a tuple in the order of ``layers``: a dict's keys may mix ints and names
        _, st = model.apply(v, x, mutable=["intermediates"])
        inter = st["intermediates"]
        return tuple(inter[layer_name(i)][0] for i in layers)

    def fn(variables, x):
        return dict(zip(layers, maps(variables, x)))

    return fn


@functools.lru_cache(maxsize=16)
def cam_fn(model):
    """jitted ``(variables, x, classes) -> (CAM at the last conv's resolution (B, h, w), softmax
    probability of the classes (B,))``: ``model.cam`` and the logits from one forward pass.

    For networks whose last conv's map feeds global average pooling and one FC layer ``fc``
    (:class:`~dcnn_dd.models.zoo.DogsCatsCNN`: ``model.feature_maps`` and ``model.widths``), where
    ``mean(CAM_c) + fc bias[c]`` is the logit of class c."""
    import jax
    import jax.numpy as jnp

    from dcnn_dd.models.zoo import class_activation_map

    last = len(model.widths)

    def fn(v, x, cls):
        maps, logits = model.feature_maps(v, x, layers=(last,))
        p = jax.nn.softmax(logits.astype(jnp.float32), -1)[jnp.arange(x.shape[0]), cls]
        return class_activation_map(maps[last], v["params"]["fc"]["kernel"], cls), p

    return jax.jit(fn)


def upsample_normalized(maps: np.ndarray, shape) -> np.ndarray:
    """(B, h, w) -> (B, *shape): bilinear, each map min-max normalised to [0, 1] (a constant map
    becomes 0)."""
    import jax

    up = np.asarray(jax.jit(jax.image.resize, static_argnums=(1, 2))(np.asarray(maps, np.float32),
                                                                      (maps.shape[0], *shape), "bilinear"))
    lo = up.min(axis=(1, 2), keepdims=True)
    hi = up.max(axis=(1, 2), keepdims=True)
    return (up - lo) / np.maximum(hi - lo, 1e-12)
