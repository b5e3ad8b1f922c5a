"""Figs. 3.7 and 3.8 of Gu et al.: feature maps and class activation maps of the composed network.

    python -m experiments.visualize --preset paper       # Dogs vs. Cats 224x224, GPUs (TFDS cats_vs_dogs)
    python -m experiments.visualize --preset gpu-small   # the same data, fewer epochs
    python -m experiments.visualize --preset cpu-smoke   # offline Fashion-MNIST stand-in, ~1.5 min on 2 CPU cores (measured 87 s)
    python -m experiments.visualize --preset tiny        # seconds (the test suite)

Section 3.1.3: the 11-layer DCNN (:class:`~dcnn_dd.models.zoo.DogsCatsCNN`: 10 SAME-padded 3x3
convs, a 2x2/2 max-pool every 2 convs, global average pooling, 2-way FC) trained by Algorithm 1 with
K = 4 sub-networks on 2x2 overlapping 140x140 sub-images of the 224x224 images (origins 0 and 84,
``paper_grid("food101-4")``).  One Algorithm-1 run (``cases/dogs_cats/``, resumable) gives every
network of the two figures:

* **Fig. 3.7** (``fig3_7_feature_maps.png``): the feature maps of layers 1, 3 and 5 of each trained
  sub-network k next to the composed global network's (GNet-T before fine-tuning) map restricted
  to the subdomain Omega of (2.15) - the activation field of sub-image k at that layer
  (:func:`dcnn_dd.fields.activation_field` with the layer's windows from
  ``DogsCatsCNN.spatial_layers()``; SAME padding at the image border counts as inside, the field
  loses one cell per conv at every *interior* sub-image border) - and to channel block k, with their
  difference.  Theorem 2.1 (1) says they are equal; :func:`dcnn_dd.theorems.feature_map_gap` measures the max
  |difference| per layer and sub-network (printed, and the ``fig3.7`` entries).  Sub-network
  coordinates are the global field's minus ``origin / cumulative stride``, so every shown layer needs
  the origins to be multiples of its cumulative stride (paper: 84 and strides 1, 2, 4; a clear
  ``ValueError`` otherwise).  Shown: the first test image, per layer and sub-network the two
  channels of largest variance; rows SNet-k / GNet-T on Omega_k / |difference| (same colour scale).
* **Fig. 3.8** (``fig3_8_cam.png``): CAM (Zhou et al. 2016, ``M = sum_n w_{n,c} X_n`` of the last
  conv, for the ground-truth class c, bilinearly upsampled, min-max normalised per map, jet over
  the grey image) for a few test images of different classes: (a) the 4 trained sub-networks - our
  choice: four small panels, each sub-image with its own CAM, laid out as the 2x2 grid (the
  overlapping sub-images are shown whole, side by side), (b) GNet-T before fine-tuning (composed),
  (c) GNet-T after fine-tuning, (d) GNet-R before training (its initial random variables,
  recomputed from the seed exactly as Algorithm 1 draws them), (e) GNet-R after training.  Titles
  give p(ground truth).  The ``fig3.8`` entries are the test accuracies of the same networks.

Presets (epochs are our choice: the paper gives none for Section 3.1.3):

* ``paper`` - TFDS ``cats_vs_dogs`` (one ``train`` split of 23,262 images; we train on its first
  80% and test on the last 20%, ``sources.TFDS_SPLITS``), resized to 224x224 (bilinear); default
  widths 32..512, K = 4, ``food101-4`` grid; augmentation ``food101`` (flip, shift 22 px, rotate 15
  deg, zoom 0.1 - scaled to 224 px images); batch 32; Adam 1e-3 divided by 10 at 2/3 of each phase;
  SNets 30 epochs, GNet-T 20, GNet-R 50 (= SNets + GNet-T, the paper's protocol).  Needs the data
  once: ``python -m dcnn_dd.data.prepare cats_vs_dogs``.  Cost: not measured (no GPU and no
  cats_vs_dogs data where this was written): 70 global-network epochs (GNet-R 50, GNet-T 20) and 30
  epochs of the four sub-networks (each 1/16 of the global FLOPs per pixel, on 39% of the pixels) over
  18.6k 224x224 images.
* ``gpu-small`` - the same data, SNets 6, GNet-T 4, GNet-R 10 epochs.
* ``cpu-smoke`` - stand-in: Fashion-MNIST 28x28 (offline IDX files), widths (8, 8, 16, 16, 32, 32,
  32, 32, 64, 64), ``pool_every=4`` (a pool after convs 4 and 8: with the paper's pool every 2 convs,
  28x28 would shrink to 1x1 at the last conv and leave no map for CAM), 10 classes, 2x2 grid of
  16x16 sub-images (origins 0 and 12; cumulative strides 1, 1, 2 at layers 1, 3, 5), first 10,000
  training images, 2,000 test images, no augmentation, batch 128, Adam 1e-3, SNets 3, GNet-T 2,
  GNet-R 5 epochs, sequential sub-networks.  Measured on 2 CPU cores (shared with other jobs): 248 s
  wall from a cold start (GNet-R 121 s, SNets 42 s, compose 3 s, GNet-T 46 s, figures and the rest
  about 35 s).  Reached: feature-map differences 0 (layers 1, 3) and 9.5e-07 (layer 5); test accuracy
  SNet-1..4 61.4 / 57.9 / 52.0 / 60.5 %, GNet-T composed 26.9 %, GNet-T fine-tuned 72.3 %, GNet-R
  initial 10.0 %, GNet-R trained 75.5 %.
* ``tiny`` - the cpu-smoke setting at seconds scale (widths 8 throughout, 512 / 256 images, 1 epoch
  each, ``vmap`` sub-networks: at this scale compiling dominates and vmap's single program compiles
  faster than the sequential one, measured 4.5 s against 8.2 s for the SNets phase); about 30 s on
  2 busy CPU cores, mostly compilation; nothing is learnt.

What it should reach.  Fig. 3.7: the feature maps are equal to float rounding at every layer and
sub-network (max |diff| ~1e-6 relative to maps of size ~10; with random weights at the paper's
224x224 geometry we measured 2e-6, 4e-6, 9e-6 at layers 1, 3, 5; the comparison runs at "highest"
matmul precision, so no TF32 on GPUs).  Fig. 3.8, the paper's qualitative
statement: even without further training the composed GNet-T highlights the important regions
(e.g. the cat), GNet-R before training is haphazard, and both trained global networks locate the
important regions.  The composed network is *not* the exact sum of the sub-networks at the logits
(global average pooling over the whole map, not the fields; SAME padding): GNet-T before
fine-tuning is an initialisation, its accuracy the ``GNet-T`` row.

Writes ``results/visualize/`` (``--out``): ``results.json``, ``results.md``, the two PNGs and
``cases/dogs_cats/`` (the engine's run directory: checkpoints, ``summary.json``, plots).  Re-running
the same command resumes training where it stopped and only redraws the figures.

Layout: :mod:`.config` (the presets, :class:`~.config.Setting`), :mod:`.analysis` (the run, its
numbers and prose), :mod:`.figures` (drawing).  The library parts live in :mod:`dcnn_dd.theorems`
(Theorem 2.1 (1): :func:`~dcnn_dd.theorems.restricted_feature_maps`,
:func:`~dcnn_dd.theorems.feature_map_gap`) and :mod:`dcnn_dd.activation_maps` (jitted feature maps
and CAMs).
"""

from __future__ import annotations

from dcnn_dd.theorems import feature_map_gap as feature_map_agreement
from dcnn_dd.theorems import restricted_feature_maps as subdomain_maps
from experiments import cli
from experiments.visualize.analysis import pick_images, run
from experiments.visualize.config import (
    CLASS_NAMES, FIGURES, LAYERS, PAPER_WIDTHS, PRESETS, Setting, cpu_smoke, gpu_small, paper, tiny,
)
from experiments.visualize.figures import draw_cam, draw_feature_maps

__all__ = [
    "CLASS_NAMES", "FIGURES", "LAYERS", "PAPER_WIDTHS", "PRESETS", "Setting", "cpu_smoke", "draw_cam",
    "draw_feature_maps", "feature_map_agreement", "gpu_small", "main", "paper", "pick_images", "run",
    "subdomain_maps", "tiny",
]


def main(argv=None) -> dict:
    return cli.main("visualize", __doc__, run, argv)
