"""On-device preprocessing: normalisation and random augmentation, pure and jit-able.

The training step receives the images as the source holds them (uint8, or float) and their
dataset indices and calls :func:`preprocess` inside ``jax.jit``, so the host only gathers and
transfers bytes and the input pipeline does not bottleneck training
(``benchmarks/input_pipeline.py`` measures it).

Determinism.  Every sample gets its own PRNG key,
``fold_in(fold_in(PRNGKey(seed), epoch), sample_id)`` (:func:`sample_keys`), and the batch is
augmented with ``vmap`` over (key, image) pairs (:func:`augment_batch`).  The augmentation of a
sample therefore depends only on (seed, epoch, dataset index): not on which batch it is in, on
the batch size or on how many devices share the batch.  A resumed run augments exactly like an
uninterrupted one.  The random draws and flips/shifts are bitwise identical; rotated or zoomed
pixels are the same arithmetic, which XLA may vectorise differently for another batch shape
(differences in the last float bits, ~1e-6).  Each random parameter comes from its own ``fold_in`` of the sample key, so
enabling, say, rotation does not change the flips.

Order with the decomposition.  Augmentation acts on the *full* image; the K sub-images of
Algorithm 1 are cut afterwards (``decompose_input(preprocess(...), grid)``), so the sub-networks
see consistent pieces of one augmented image, exactly as the global network does.

The geometric transform.  Output pixel p (row, col) takes the input at
``q = c + R(-theta) (p - c - t) / z`` (c the image centre): the image is rotated by theta
about its centre, scaled by z (z > 1 zooms in), then translated by t (integer pixels, t > 0
moves the content down / right), with bilinear interpolation (``map_coordinates``, order 1) and
zero fill.  Without rotation and zoom, the translation is an exact integer shift (pad +
slice), the classic "pad 4, random crop" of CIFAR.  Zero fill happens after
:func:`normalize`, i.e. in the dataset's mean colour.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


@dataclasses.dataclass(frozen=True)
class Augment:
    """Random augmentation of one image, ranges per sample:

    * ``flip`` - horizontal flip with probability 1/2;
    * ``shift`` - integer translation in [-shift, shift] pixels on each axis, zero fill;
    * ``rotate`` - rotation by an angle uniform in [-rotate, rotate] degrees;
    * ``zoom`` - scale uniform in [1 - zoom, 1 + zoom] (0.1: 0.9 .. 1.1).
    """

    flip: bool = False
    shift: int = 0
    rotate: float = 0.0
    zoom: float = 0.0

    def __post_init__(self):
        if isinstance(self.shift, bool) or int(self.shift) != self.shift or self.shift < 0:
            raise ValueError(f"shift={self.shift!r} must be a non-negative integer (pixels)")
        if not (math.isfinite(self.rotate) and 0 <= self.rotate <= 180):
            raise ValueError(f"rotate={self.rotate!r} must be in [0, 180] degrees")
        if not (math.isfinite(self.zoom) and 0 <= self.zoom < 1):
            raise ValueError(f"zoom={self.zoom!r} must be in [0, 1) (scale in [1 - zoom, 1 + zoom])")
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "shift", int(self.shift))
        object.__setattr__(self, "rotate", float(self.rotate))
        object.__setattr__(self, "zoom", float(self.zoom))

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.shift == 0 and self.rotate == 0 and self.zoom == 0

    @property
    def is_affine(self) -> bool:
        """Rotation or zoom: needs interpolation (otherwise shifts are exact integer moves)."""
        return self.rotate != 0 or self.zoom != 0


NONE = Augment()
# Section 3.1.1: CIFAR images are "randomly horizontal flipped and randomly shifted"; 4 pixels of
# 32 is the standard shift of the ResNet papers (He et al. 2016: pad 4, random 32x32 crop).
CIFAR = Augment(flip=True, shift=4)
# Section 3.1.2 (Food-101, 224x224): random rotation, zoom, horizontal flip and shift.  The paper
# gives no ranges; ours are moderate, common choices: +-15 degrees, scale 0.9..1.1, +-22 pixels
# (10% of 224).
FOOD101 = Augment(flip=True, shift=22, rotate=15.0, zoom=0.1)
# Fashion-MNIST (28x28): our choice, not the paper's.  Horizontal flip keeps every class
# (a mirrored shirt, bag or left shoe is still one); +-2 pixels keeps the centred object inside
# the frame.  The quick-start runs use NONE.
FASHION = Augment(flip=True, shift=2)

PRESETS = {"none": NONE, "cifar": CIFAR, "food101": FOOD101, "fashion": FASHION}


# ---------------------------------------------------------------------------- normalisation
def normalize(images, mean, pixel_scale: float = 255.0):
    """Images (..., C) -> float32 ``x / pixel_scale - mean`` (mean per channel, in the same units,
    from :func:`dcnn_dd.data.sources.channel_mean`): zero-mean inputs, as in Section 3.
    ``pixel_scale``: the source's, 255.0 for uint8 images (0..255 -> [0, 1]), 1.0 for float images."""
    return jnp.asarray(images, jnp.float32) / pixel_scale - jnp.asarray(mean, jnp.float32)


# ---------------------------------------------------------------------------- keys and parameters
def sample_keys(seed, epoch, sample_ids):
    """One PRNG key per sample: ``fold_in(fold_in(PRNGKey(seed), epoch), sample_id)``, shape (B, 2)."""
    base = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
    ids = jnp.asarray(sample_ids).astype(jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)


def sample_params(key, cfg: Augment) -> dict:
    """The random parameters of one sample: ``flip`` (bool), ``shift`` (int32 (dy, dx)),
    ``angle`` (radians), ``scale``; disabled options get their identity value."""
    flip = jax.random.bernoulli(jax.random.fold_in(key, 0)) if cfg.flip else jnp.bool_(False)
    if cfg.shift:
        shift = jax.random.randint(jax.random.fold_in(key, 1), (2,), -cfg.shift, cfg.shift + 1, jnp.int32)
    else:
        shift = jnp.zeros((2,), jnp.int32)
    rad = math.radians(cfg.rotate)
    angle = jax.random.uniform(jax.random.fold_in(key, 2), (), jnp.float32, -rad, rad) if cfg.rotate else jnp.float32(0)
    scale = (jax.random.uniform(jax.random.fold_in(key, 3), (), jnp.float32, 1 - cfg.zoom, 1 + cfg.zoom)
             if cfg.zoom else jnp.float32(1))
    return {"flip": flip, "shift": shift, "angle": angle, "scale": scale}


# ---------------------------------------------------------------------------- transforms
def flip_horizontal(image, flip):
    """(H, W, C): mirror left-right where ``flip`` is true."""
    return jnp.where(flip, image[:, ::-1], image)


def translate(image, shift, max_shift: int):
    """(H, W, C): move the content by the integer ``shift`` = (dy, dx), |dy|, |dx| <= ``max_shift``,
    zero fill: ``out[i, j] = image[i - dy, j - dx]``.  Exact (pad + dynamic slice)."""
    h, w, c = image.shape
    s = int(max_shift)
    padded = jnp.pad(image, ((s, s), (s, s), (0, 0)))
    return jax.lax.dynamic_slice(padded, (s - shift[0], s - shift[1], 0), (h, w, c))


def affine(image, angle, scale, shift):
    """(H, W, C) float: rotate by ``angle`` (radians) about the centre, scale by ``scale``, move by
    ``shift`` (dy, dx); bilinear, zero fill.  ``out(p) = in(c + R(-angle) (p - c - shift) / scale)``."""
    h, w, _ = image.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    y = rows - cy - shift[0].astype(jnp.float32)
    x = cols - cx - shift[1].astype(jnp.float32)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = cy + (cos * y + sin * x) / scale
    src_x = cx + (-sin * y + cos * x) / scale
    one = lambda ch: map_coordinates(ch, [src_y, src_x], order=1, mode="constant", cval=0.0)  # noqa: E731
    return jax.vmap(one, in_axes=-1, out_axes=-1)(image)


def apply_params(image, params: dict, cfg: Augment):
    """Augment one (H, W, C) image with given parameters (see :func:`sample_params`)."""
    if cfg.flip:
        image = flip_horizontal(image, params["flip"])
    if cfg.is_affine:
        if not jnp.issubdtype(image.dtype, jnp.floating):
            raise ValueError(f"rotation/zoom interpolate: give float images (normalize first), got {image.dtype}")
        image = affine(image, params["angle"], params["scale"], params["shift"])
    elif cfg.shift:
        image = translate(image, params["shift"], cfg.shift)
    return image


def augment_image(key, image, cfg: Augment):
    """One (H, W, C) image, its own key."""
    return apply_params(image, sample_params(key, cfg), cfg)


def augment_batch(keys, images, cfg: Augment):
    """(B, H, W, C) images, (B, 2) keys (one per sample, :func:`sample_keys`) -> augmented images.
    The identity configuration returns ``images`` itself."""
    if cfg.is_identity:
        return images
    if images.ndim != 4:
        raise ValueError(f"augment_batch takes images (B, H, W, C), got shape {tuple(images.shape)}")
    if keys.shape[0] != images.shape[0]:
        raise ValueError(f"{keys.shape[0]} keys for {images.shape[0]} images: one key per sample")
    if cfg.is_affine and not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"rotation/zoom interpolate: give float images (normalize first), got {images.dtype}")
    return jax.vmap(lambda k, x: augment_image(k, x, cfg))(keys, images)


def preprocess(images, sample_ids, *, seed, epoch, mean, cfg: Augment, train: bool, pixel_scale: float = 255.0):
    """uint8 or float (B, H, W, C) -> float32: :func:`normalize` (by ``pixel_scale``, the source's),
    then (``train`` only) :func:`augment_batch` with the keys of (seed, epoch, sample_ids).
    Decompose into sub-images *after* this."""
    x = normalize(images, mean, pixel_scale)
    if train and not cfg.is_identity:
        x = augment_batch(sample_keys(seed, epoch, sample_ids), x, cfg)
    return x
