"""The data package: IDX parsing and dataset discovery, TFDS random access (mocked and real
array_record files written without TensorFlow), on-device augmentation, the host pipeline."""

import functools
import gc
import gzip
import io
import math
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dcnn_dd.data import augment as aug
from dcnn_dd.data import pipeline, prepare, sources
from dcnn_dd.grid import Grid, assemble, decompose_input

REPO = pathlib.Path(__file__).resolve().parents[1]


# ============================================================================ IDX files
def idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    code = codes[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False):
    raw = idx_bytes(arr)
    path = pathlib.Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("arr", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-70000, 0, 5, 2**31 - 1], dtype=np.int32),
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    np.array([[-3, 300]], dtype=np.int16),
])
def test_read_idx_roundtrip(tmp_path, arr, gz):
    out = sources.read_idx(write_idx(tmp_path / "a.idx", arr, gz))
    assert out.dtype == arr.dtype.newbyteorder("=") and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_read_idx_hand_built_header(tmp_path):
    # magic 0x00000801: uint8, 1 dimension of 3, then the data
    p = tmp_path / "h"
    p.write_bytes(bytes.fromhex("00000801 00000003 07 08 09".replace(" ", "")))
    np.testing.assert_array_equal(sources.read_idx(p), [7, 8, 9])


@pytest.mark.parametrize("raw, msg", [
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "truncated"),
    (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\0", "trailing"),
    (b"\x01" + idx_bytes(np.zeros(3, np.uint8))[1:], "magic"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "dtype code"),
    (bytes([0, 0, 0x08, 3, 0, 0, 0, 1]), "header"),
    (b"\0\0", "too short"),
])
def test_read_idx_corrupt(tmp_path, raw, msg):
    p = tmp_path / "bad"
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=msg):
        sources.read_idx(p)


def test_read_idx_truncated_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    p = tmp_path / "bad.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="gzip"):
        sources.read_idx(p)


# ============================================================================ Fashion-MNIST
def test_fashion_mnist_real():
    """The installed dataset (Debian's dataset-fashion-mnist, or $DCNN_DD_DATA)."""
    train, test = sources.load_fashion_mnist("train"), sources.load_fashion_mnist("test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.image_shape == test.image_shape == (28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int32 and train.num_classes == 10
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    assert train.images.max() == 255 and train.images.min() == 0
    assert abs(float(sources.channel_mean(train, max_samples=60000)[0]) - 0.2860) < 5e-4  # the known mean


def fake_fashion_dir(directory, gz=True, n=(5, 3)):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "test"), n):
        img_stem, lab_stem = sources.FASHION_MNIST_FILES[split]
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        write_idx(directory / (img_stem + (".gz" if gz else "")), images, gz)
        write_idx(directory / (lab_stem + (".gz" if gz else "")), labels, gz)
        arrays[split] = images, labels
    return arrays


@pytest.fixture
def no_default_data(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "DEFAULT_FASHION_MNIST_DIR", tmp_path / "no-such-dir")
    monkeypatch.delenv(sources.FASHION_MNIST_ENV, raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_find_fashion_mnist_explicit_path(tmp_path, no_default_data, gz):
    arrays = fake_fashion_dir(tmp_path / "fm", gz=gz)
    assert sources.find_fashion_mnist(tmp_path / "fm") == tmp_path / "fm"
    src = sources.load_fashion_mnist("test", path=tmp_path / "fm")
    np.testing.assert_array_equal(src.images[..., 0], arrays["test"][0])
    np.testing.assert_array_equal(src.labels, arrays["test"][1])
    assert src.images.shape == (3, 28, 28, 1)


def test_find_fashion_mnist_env(tmp_path, monkeypatch, no_default_data):
    fake_fashion_dir(tmp_path / "root" / "fashion-mnist")  # a data root with a fashion-mnist subdirectory
    monkeypatch.setenv("DCNN_DD_DATA", str(tmp_path / "root"))
    assert sources.find_fashion_mnist() == tmp_path / "root" / "fashion-mnist"
    fake_fashion_dir(tmp_path / "flat")  # or the directory itself
    monkeypatch.setenv("DCNN_DD_DATA", str(tmp_path / "flat"))
    assert sources.find_fashion_mnist() == tmp_path / "flat"
    assert len(sources.load_fashion_mnist("train")) == 5


def test_find_fashion_mnist_env_before_default(tmp_path, monkeypatch):
    fake_fashion_dir(tmp_path / "d")
    fake_fashion_dir(tmp_path / "default", n=(7, 2))
    monkeypatch.setattr(sources, "DEFAULT_FASHION_MNIST_DIR", tmp_path / "default")
    monkeypatch.setenv("DCNN_DD_DATA", str(tmp_path / "d"))
    assert sources.find_fashion_mnist() == tmp_path / "d"
    monkeypatch.setenv("DCNN_DD_DATA", str(tmp_path / "empty"))  # set but wrong: falls back, default found
    assert sources.find_fashion_mnist() == tmp_path / "default"


def test_fashion_mnist_missing_message(tmp_path, no_default_data):
    with pytest.raises(sources.DatasetNotFoundError) as e:
        sources.load_fashion_mnist("train")
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert "sudo apt-get install dataset-fashion-mnist" in msg and "export DCNN_DD_DATA=" in msg
    assert str(tmp_path / "no-such-dir") in msg and "$DCNN_DD_DATA: not set" in msg
    assert "Traceback" not in msg and e.value.__cause__ is None


def test_fashion_mnist_partial_dir_and_explicit_path_is_strict(tmp_path):
    fake_fashion_dir(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(sources.DatasetNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        sources.find_fashion_mnist(tmp_path / "fm")  # the real default exists; an explicit path is not replaced


# ============================================================================ ArraySource, digits
def test_array_source_take_subset():
    images = np.arange(6 * 2 * 2 * 1, dtype=np.uint8).reshape(6, 2, 2, 1)
    src = sources.ArraySource(images, np.array([0, 1, 2, 0, 1, 2]), 3, "toy")
    assert len(src) == 6 and src.image_shape == (2, 2, 1) and src.labels.dtype == np.int32
    im, lab = src.take(np.array([[5, 0], [2, 2]], dtype=np.int16))
    assert im.shape == (2, 2, 2, 2, 1) and lab.tolist() == [[2, 0], [2, 2]]
    np.testing.assert_array_equal(im[0, 0], images[5])
    sub = src.subset(np.array([4, 1]))
    np.testing.assert_array_equal(sub.images, images[[4, 1]])
    assert len(src.subset(2)) == 2 and sub.num_classes == 3
    with pytest.raises(IndexError):
        src.take([6])
    with pytest.raises(ValueError, match="subset"):
        src.subset(7)
    with pytest.raises(ValueError, match="uint8"):
        sources.ArraySource(images.astype(np.int64), src.labels, 3, "toy")
    with pytest.raises(ValueError, match="outside"):
        sources.ArraySource(images, np.array([0, 1, 2, 3, 0, 0]), 3, "toy")


def test_digits():
    train, test = sources.load_digits("train"), sources.load_digits("test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.25 * 1797)
    assert train.image_shape == (8, 8, 1) and train.images.dtype == np.uint8 and train.images.max() == 255
    assert set(np.unique(train.labels)) == set(range(10)) and train.num_classes == 10
    # values 0..16 scaled by 255/16: every pixel is round(v * 255 / 16) for an integer v
    levels = {int(round(v * 255 / 16)) for v in range(17)}
    assert set(np.unique(train.images)) <= levels
    again = sources.load_digits("train")
    np.testing.assert_array_equal(again.images, train.images)
    all_rows = {r.tobytes() + bytes([int(lab)]) for r, lab in zip(np.concatenate([train.images, test.images]),
                                                                  np.concatenate([train.labels, test.labels]))}
    assert len(all_rows) > 1700  # disjoint split (a few duplicated digits exist in the raw data)
    assert not np.array_equal(sources.load_digits("test", seed=1).labels, test.labels)


def test_channel_mean_exact():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[..., 0], images[..., 1], images[:2, ..., 2] = 255, 51, 102
    src = sources.ArraySource(images, np.zeros(4, np.int32), 1, "toy")
    np.testing.assert_allclose(sources.channel_mean(src, chunk=3), [1.0, 0.2, 0.2], rtol=1e-6)


def test_load_dispatch_errors():
    assert isinstance(sources.load("digits", "test"), sources.ArraySource)
    with pytest.raises(ValueError, match="only supported for TFDS"):
        sources.load("digits", "train", image_size=(32, 32))
    with pytest.raises(ValueError, match="neither registered .*digits.* nor a TFDS dataset name"):
        sources.load("no_such_dataset_xyz", "train")
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        sources.load("fashion_mnist_idx", "validation")


# ============================================================================ TFDS
def test_tfds_mock_data_source():
    """``tfds.testing.mock_data`` mocks ``as_data_source`` and works without TensorFlow."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        cifar = sources.load("cifar10", "train")
        assert isinstance(cifar, sources.TFDSSource) and len(cifar) == 6 and cifar.num_classes == 10
        assert cifar.image_shape == (32, 32, 3)
        im, lab = cifar.take(np.array([5, 0, 5]))
        assert im.shape == (3, 32, 32, 3) and im.dtype == np.uint8 and lab.dtype == np.int32
        np.testing.assert_array_equal(im[0], im[2])
        assert sources.load("cifar100", "test").num_classes == 100
        fm = sources.TFDSSource("fashion_mnist", "test")
        assert fm.image_shape == (28, 28, 1) and fm.take([1])[0].shape == (1, 28, 28, 1)
        assert sources.TFDSSource("fashion_mnist", "test", image_size=(14, 14)).take([1])[0].shape == (1, 14, 14, 1)
        # variable-size images (the mock draws random sizes)
        food = sources.TFDSSource("food101", "train")
        with pytest.raises(ValueError, match="image_size"):
            food.take(np.arange(6))
        with pytest.raises(ValueError, match="image_size"):
            food.image_shape
        with pytest.raises(ValueError, match="image_size"):
            food.subset(2).image_shape
        food = sources.TFDSSource("food101", "test", image_size=(24, 20))
        assert food.num_classes == 101 and food.image_shape == (24, 20, 3)
        assert food.take(np.arange(6))[0].shape == (6, 24, 20, 3)
        cats = sources.TFDSSource("cats_vs_dogs", "train", image_size=(16, 16)).subset(np.array([4, 2]))
        assert len(cats) == 2 and cats.num_classes == 2 and cats.take([0, 1])[0].shape == (2, 16, 16, 3)


def write_array_record_dataset(name, data_dir, splits, version_check=True):
    """A prepared TFDS ``array_record`` dataset written without TensorFlow: tf.Example protos
    (TFDS's own copy of the proto) with PNG-encoded images (PIL), plus TFDS's metadata files.
    ``splits``: {split: [(image (h, w, C) uint8, label), ...]}."""
    from array_record.python import array_record_module
    from PIL import Image
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import naming
    from tensorflow_datasets.core import splits as splits_lib
    from tensorflow_datasets.proto import tf_example_pb2, tf_feature_pb2

    builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
    os.makedirs(builder.data_dir, exist_ok=True)
    infos = []
    for split, examples in splits.items():
        tmpl = naming.ShardedFileTemplate(data_dir=builder.data_dir, dataset_name=name, split=split,
                                          filetype_suffix="array_record")
        writer = array_record_module.ArrayRecordWriter(os.fspath(tmpl.sharded_filepath(shard_index=0, num_shards=1)),
                                                       "group_size:1")
        for image, label in examples:
            buf = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
            feats = {
                "image": tf_feature_pb2.Feature(bytes_list=tf_feature_pb2.BytesList(value=[buf.getvalue()])),
                "label": tf_feature_pb2.Feature(int64_list=tf_feature_pb2.Int64List(value=[label])),
            }
            writer.write(tf_example_pb2.Example(features=tf_feature_pb2.Features(feature=feats)).SerializeToString())
        writer.close()
        infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[len(examples)], num_bytes=0,
                                          filename_template=tmpl))
    builder.info.set_splits(splits_lib.SplitDict(infos))
    builder.info.write_to_directory(builder.data_dir)


def test_tfds_real_array_record_variable_size(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    from PIL import Image

    rng = np.random.default_rng(0)
    examples = [(rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8), i % 101)
                for i, (h, w) in enumerate(rng.integers(9, 40, (5, 2)))]
    write_array_record_dataset("food101", tmp_path, {"train": examples[:2], "validation": examples})
    test = sources.load("food101", "test", data_dir=tmp_path, image_size=(12, 10))  # 'test' -> 'validation'
    assert len(test) == 5 and len(sources.TFDSSource("food101", "train", data_dir=tmp_path, image_size=(4, 4))) == 2
    images, labels = test.take(np.array([3, 1]))
    assert images.shape == (2, 12, 10, 3) and labels.tolist() == [3, 1]
    want = np.asarray(Image.fromarray(examples[3][0]).resize((10, 12), Image.BILINEAR))
    np.testing.assert_array_equal(images[0], want)
    threads = [sources.TFDSSource("food101", "test", data_dir=tmp_path, image_size=(12, 10), num_workers=w)
               for w in (1, 3)]
    np.testing.assert_array_equal(threads[0].take(np.arange(5))[0], threads[1].take(np.arange(5))[0])
    native = sources.TFDSSource("food101", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(native.take([2])[0][0], examples[2][0])  # PNG is lossless
    sub = test.subset(np.array([4, 0]))
    np.testing.assert_array_equal(sub.take([0, 1])[1], [4, 0])


def test_tfds_real_array_record_grayscale_and_split(tmp_path):
    pytest.importorskip("array_record")
    rng = np.random.default_rng(1)
    examples = [(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), i) for i in range(5)]
    rgb = [(np.repeat(im, 3, -1), i % 2) for im, i in examples]
    write_array_record_dataset("cats_vs_dogs", tmp_path, {"train": rgb})
    train = sources.load("cats_vs_dogs", "train", data_dir=tmp_path, image_size=(8, 8))
    test = sources.load("cats_vs_dogs", "test", data_dir=tmp_path, image_size=(8, 8))
    assert (len(train), len(test)) == (4, 1)  # train[:80%] / train[80%:]
    write_array_record_dataset("fashion_mnist", tmp_path, {"test": examples})
    fm = sources.load("fashion_mnist", "test", data_dir=tmp_path, image_size=(14, 14))
    images, labels = fm.take(np.arange(5))
    assert images.shape == (5, 14, 14, 1) and labels.tolist() == [0, 1, 2, 3, 4]
    native = sources.load("fashion_mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(native.take(np.arange(5))[0], np.stack([im for im, _ in examples]))
    assert abs(float(sources.channel_mean(native)[0]) - native.take(np.arange(5))[0].mean() / 255) < 1e-6


def test_tfds_not_prepared_message(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(sources.DatasetNotFoundError) as e:
        sources.load("cifar10", "train", data_dir=tmp_path)
    msg = str(e.value)
    assert f"pip install 'dcnn-dd[prepare]' && python -m dcnn_dd.data.prepare cifar10 --data-dir {tmp_path}" in msg
    assert "not prepared" in msg and e.value.__cause__ is None


def test_prepare_without_tensorflow(monkeypatch, capsys):
    monkeypatch.setattr(prepare, "missing_requirements", lambda: ["tensorflow"])
    assert prepare.main(["cifar10"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'dcnn-dd[prepare]'" in err and "tensorflow-cpu" in err


def test_prepare_calls_tfds_with_array_record(monkeypatch, capsys, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []

    class FakeBuilder:
        data_dir = str(tmp_path / "cifar10" / "3.0.2")

        def download_and_prepare(self, **kw):
            calls.append(("prepare", kw))

    monkeypatch.setattr(prepare, "missing_requirements", lambda: [])
    monkeypatch.setattr(tfds, "builder", lambda name, **kw: calls.append((name, kw)) or FakeBuilder())
    assert prepare.main(["cifar10", "--data-dir", str(tmp_path)]) == 0
    assert calls == [("cifar10", {"data_dir": str(tmp_path), "file_format": "array_record"}),
                     ("prepare", {"file_format": "array_record"})]
    assert "prepared cifar10" in capsys.readouterr().out


# ============================================================================ augmentation
def images_f32(n=6, h=12, w=10, c=2, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, h, w, c), jnp.float32, -1, 1)


ALL = aug.Augment(flip=True, shift=3, rotate=20.0, zoom=0.15)


@pytest.mark.parametrize("cfg", [aug.CIFAR, ALL], ids=["flip+shift", "all"])
def test_augment_deterministic_per_sample(cfg):
    x = images_f32()
    ids = jnp.array([7, 3, 100, 5, 0, 9])
    run = jax.jit(lambda x, ids, epoch: aug.augment_batch(aug.sample_keys(0, epoch, ids), x, cfg))
    a, b = run(x, ids, 1), run(x, ids, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, run(x, ids, 2))  # another epoch, other draws
    other_seed = aug.augment_batch(aug.sample_keys(1, 1, ids), x, cfg)
    assert not np.array_equal(a, other_seed)
    assert not np.array_equal(a, x)


@pytest.mark.parametrize("cfg", [aug.CIFAR, ALL], ids=["flip+shift", "all"])
def test_augment_independent_of_batch_composition(cfg):
    x = images_f32(8)
    ids = jnp.arange(40, 48)
    run = jax.jit(lambda x, ids: aug.preprocess(x, ids, seed=3, epoch=2, mean=0.0, cfg=cfg, train=True))
    xu8 = (x * 100 + 128).astype(jnp.uint8)
    full = run(xu8, ids)
    # the random draws are bitwise those of (seed, epoch, id); the interpolation of rotations and
    # zooms is the same arithmetic, but XLA vectorises it differently per batch shape (last bits)
    atol = 1e-5 if cfg.is_affine else 0
    params = jax.jit(lambda ids: jax.vmap(lambda k: aug.sample_params(k, cfg))(aug.sample_keys(3, 2, ids)))
    for i in (0, 5):
        np.testing.assert_allclose(run(xu8[i:i + 1], ids[i:i + 1])[0], full[i], rtol=0, atol=atol)
        alone, batch = params(ids[i:i + 1]), params(ids)
        for name in alone:
            np.testing.assert_array_equal(alone[name][0], batch[name][i])
    perm = jnp.array([6, 2, 7, 0, 1, 5, 3, 4])
    np.testing.assert_allclose(run(xu8[perm], ids[perm]), full[perm], rtol=0, atol=atol)


def test_identity_config_is_exact():
    x = images_f32()
    assert aug.NONE.is_identity
    assert aug.augment_batch(aug.sample_keys(0, 0, jnp.arange(6)), x, aug.NONE) is x
    u8 = jnp.arange(6 * 12 * 10 * 2, dtype=jnp.uint8).reshape(6, 12, 10, 2)
    mean = jnp.array([0.25, 0.5])
    out = jax.jit(lambda u: aug.preprocess(u, jnp.arange(6), seed=0, epoch=0, mean=mean, cfg=aug.NONE, train=True))(u8)
    np.testing.assert_array_equal(out, jax.jit(aug.normalize)(u8, mean))  # jit vs jit: XLA may rewrite x / 255
    want = np.asarray(u8, np.float32) / 255.0 - np.float32([0.25, 0.5])
    np.testing.assert_allclose(aug.normalize(u8, mean), want, rtol=0, atol=1e-7)  # XLA may use x * (1/255)
    # train=False never augments
    ev = aug.preprocess(u8, jnp.arange(6), seed=0, epoch=0, mean=mean, cfg=ALL, train=False)
    np.testing.assert_array_equal(ev, aug.normalize(u8, mean))


def test_flip_is_a_flip():
    cfg = aug.Augment(flip=True)
    x = images_f32(64, 5, 7, 1)
    keys = aug.sample_keys(0, 0, jnp.arange(64))
    out = np.asarray(aug.augment_batch(keys, x, cfg))
    flips = np.asarray(jax.jit(jax.vmap(lambda k: aug.sample_params(k, cfg)["flip"]))(keys))
    assert 10 < flips.sum() < 54
    want = np.where(flips[:, None, None, None], np.asarray(x)[:, :, ::-1], np.asarray(x))
    np.testing.assert_array_equal(out, want)


def shifted(img, dy, dx):
    """numpy reference: content moved by (dy, dx), zero fill."""
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    src = img[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = src
    return out


def test_shift_moves_pixels():
    cfg = aug.Augment(shift=3)
    x = images_f32(200, 9, 8, 2)
    keys = aug.sample_keys(5, 1, jnp.arange(200))
    out = np.asarray(jax.jit(lambda k, x: aug.augment_batch(k, x, cfg))(keys, x))
    shifts = np.asarray(jax.jit(jax.vmap(lambda k: aug.sample_params(k, cfg)["shift"]))(keys))
    assert set(shifts.ravel().tolist()) == set(range(-3, 4))  # the whole range [-3, 3] is drawn
    for i in range(200):
        np.testing.assert_array_equal(out[i], shifted(np.asarray(x[i]), *shifts[i]))


def test_affine_identity_translation_rotation_zoom():
    x = images_f32(1, 11, 11, 3)[0]
    np.testing.assert_allclose(aug.affine(x, 0.0, 1.0, jnp.zeros(2, jnp.int32)), x, atol=1e-6)
    # an integer translation through the interpolating path is the exact shift
    np.testing.assert_allclose(aug.affine(x, 0.0, 1.0, jnp.array([2, -1])), shifted(np.asarray(x), 2, -1), atol=1e-6)
    np.testing.assert_allclose(aug.translate(x, jnp.array([2, -1]), 3), shifted(np.asarray(x), 2, -1), atol=0)
    # 90 degrees about the centre of a square image: numpy's rot90 (counter-clockwise)
    rot = aug.affine(x, math.pi / 2, 1.0, jnp.zeros(2, jnp.int32))
    np.testing.assert_allclose(rot, np.rot90(x, 1, (0, 1)), atol=1e-5)
    # zoom 2 about the centre of a linear ramp: bilinear interpolation is exact on it
    ramp = jnp.broadcast_to(jnp.arange(11, dtype=jnp.float32)[:, None, None], (11, 11, 1))
    out = np.asarray(aug.affine(ramp, 0.0, 2.0, jnp.zeros(2, jnp.int32)))[:, 5, 0]
    np.testing.assert_allclose(out, 5 + (np.arange(11) - 5) / 2, atol=1e-5)
    # zoom out: the border becomes the zero fill
    assert float(jnp.abs(aug.affine(ramp + 1, 0.0, 0.5, jnp.zeros(2, jnp.int32))[0]).max()) == 0


def test_rotation_zoom_ranges_and_presets():
    keys = aug.sample_keys(0, 0, jnp.arange(500))
    p = jax.jit(jax.vmap(lambda k: aug.sample_params(k, aug.FOOD101)))(keys)
    assert 0.9 <= float(p["scale"].min()) < 0.92 and 1.08 < float(p["scale"].max()) <= 1.1
    assert math.radians(14) < float(jnp.abs(p["angle"]).max()) <= math.radians(15)
    assert int(jnp.abs(p["shift"]).max()) == 22
    # enabling rotation does not change the flips or shifts (one fold_in per parameter)
    q = jax.jit(jax.vmap(lambda k: aug.sample_params(k, aug.CIFAR)))(keys)
    np.testing.assert_array_equal(p["flip"], q["flip"])
    x = images_f32(4, 64, 64, 3)
    out = jax.jit(lambda x: aug.augment_batch(keys[:4], x, aug.FOOD101))(x)
    assert out.shape == x.shape and bool(jnp.isfinite(out).all())
    assert set(aug.PRESETS) == {"none", "cifar", "food101", "fashion"}
    with pytest.raises(ValueError, match="float"):
        aug.augment_batch(keys[:4], (x * 0).astype(jnp.uint8), aug.FOOD101)
    for bad in (dict(shift=-1), dict(shift=1.5), dict(zoom=1.0), dict(rotate=-5)):
        with pytest.raises(ValueError):
            aug.Augment(**bad)
    with pytest.raises(ValueError, match="one key per sample"):
        aug.augment_batch(keys[:3], x, aug.CIFAR)


@pytest.mark.parametrize("cfg", [aug.FASHION, ALL], ids=["fashion", "all"])
def test_sub_images_come_from_one_augmented_image(cfg):
    """Algorithm 1 decomposes *after* augmenting: sub-images are pieces of one augmented image."""
    u8 = jax.random.randint(jax.random.PRNGKey(0), (4, 28, 28, 1), 0, 256).astype(jnp.uint8)
    ids = jnp.array([11, 12, 13, 14])
    overlap = Grid.uniform((28, 28), 2, size=16)  # origins 0 and 12: 4 shared rows / columns
    tiles = Grid.uniform((28, 28), 2)

    @jax.jit
    def step(u8, ids):
        x = aug.preprocess(u8, ids, seed=0, epoch=3, mean=0.3, cfg=cfg, train=True)
        return x, decompose_input(x, overlap), decompose_input(x, tiles)

    full, subs, quarters = step(u8, ids)
    # XLA fuses the interpolation into each slice's consumer, so rotated/zoomed pixels may differ
    # in the last float bits between the outputs of one jitted step; flips and shifts are exact.
    same = functools.partial(np.testing.assert_allclose, rtol=0, atol=0 if not cfg.is_affine else 1e-5)
    for k, box in enumerate(overlap.boxes):
        same(subs[k], full[(slice(None), *box.slices())])
    same(subs[0][:, :, 12:16], subs[1][:, :, 0:4])  # the shared columns agree
    same(subs[0][:, 12:16], subs[2][:, 0:4])  # the shared rows agree
    same(assemble(quarters, tiles), full)
    assert float(jnp.abs(full - aug.normalize(u8, 0.3)).max()) > 0.1  # it did augment
    # the negative control: augmenting each sub-image on its own breaks the agreement
    x = aug.normalize(u8, 0.3)
    own = [aug.augment_batch(aug.sample_keys(0, 3, ids * 4 + k), s, cfg)
           for k, s in enumerate(decompose_input(x, overlap))]
    assert float(jnp.abs(own[0][:, :, 12:16] - own[1][:, :, 0:4]).max()) > 0.1


# ============================================================================ pipeline
def test_epoch_order():
    o = pipeline.epoch_order(0, 0, 103, 10)
    assert o.shape == (10, 10) and len(np.unique(o)) == 100 and o.min() >= 0 and o.max() < 103
    np.testing.assert_array_equal(o, pipeline.epoch_order(0, 0, 103, 10))
    assert not np.array_equal(o, pipeline.epoch_order(0, 1, 103, 10))
    assert not np.array_equal(o, pipeline.epoch_order(1, 0, 103, 10))
    full = pipeline.epoch_order(0, 0, 103, 10, drop_remainder=False)
    assert full.shape == (11, 10) and set(full.ravel()) == set(range(103))
    np.testing.assert_array_equal(full[:10], o)  # the same permutation
    np.testing.assert_array_equal(pipeline.epoch_order(0, 0, 6, 3, shuffle=False), [[0, 1, 2], [3, 4, 5]])
    assert pipeline.steps_per_epoch(103, 10) == 10 and pipeline.steps_per_epoch(103, 10, False) == 11
    assert pipeline.epoch_order(0, 0, 5, 10).shape == (0, 10)
    with pytest.raises(ValueError):
        pipeline.steps_per_epoch(10, 0)


def toy_source(n=50, shape=(4, 4, 1)):
    images = (np.arange(n)[:, None, None, None] + np.zeros((1, *shape), np.int64)).astype(np.uint8)
    return sources.ArraySource(images, np.arange(n) % 7, 7, "toy")


def test_batches_resume_mid_epoch():
    src = toy_source()
    every = [tuple(np.asarray(a) for a in b) for b in pipeline.batches(src, seed=4, epoch=2, batch_size=8)]
    assert len(every) == 6
    resumed = [tuple(np.asarray(a) for a in b)
               for b in pipeline.batches(src, seed=4, epoch=2, batch_size=8, start_step=4, prefetch=0)]
    assert len(resumed) == 2
    for a, b in zip(every[4:], resumed):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    images, labels, ids = every[0]
    np.testing.assert_array_equal(images[:, 0, 0, 0], ids)  # the rows of the indices
    np.testing.assert_array_equal(labels, ids % 7)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in every]), pipeline.epoch_order(4, 2, 50, 8).ravel())
    with pytest.raises(ValueError, match="start_step"):
        pipeline.batches(src, seed=0, epoch=0, batch_size=8, start_step=7)


def test_prefetch_order_exceptions_and_close():
    assert list(pipeline.prefetch(range(10), 3)) == list(range(10))
    assert list(pipeline.prefetch(range(4), 0)) == [0, 1, 2, 3]

    def failing():
        yield 1
        yield 2
        raise RuntimeError("disk on fire")

    it = pipeline.Prefetcher(failing(), 1)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)

    def interrupted():
        yield 0
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(pipeline.Prefetcher(interrupted()))

    produced, closed = [], threading.Event()

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    with pipeline.Prefetcher(endless(), 2) as it:
        assert [next(it) for _ in range(3)] == [0, 1, 2]
    assert closed.wait(5) and not it._thread.is_alive()
    assert len(produced) <= 3 + 2 + 1  # bounded: never more than `size` (+1 in hand) ahead
    # an abandoned prefetcher (no close) is garbage-collected and its thread stops
    closed.clear()
    it = pipeline.Prefetcher(endless(), 1)
    next(it)
    thread = it._thread
    del it
    gc.collect()
    thread.join(5)
    assert not thread.is_alive() and closed.is_set()


def test_evaluate_batches_cover_each_sample_once():
    src = toy_source(23)
    seen = []
    for images, labels, ids, mask in pipeline.evaluate_batches(src, 10):
        assert images.shape == (10, 4, 4, 1) and mask.dtype == jnp.bool_
        m = np.asarray(mask)
        seen += np.asarray(ids)[m].tolist()
        np.testing.assert_array_equal(np.asarray(labels)[m], np.asarray(ids)[m] % 7)
    assert seen == list(range(23))
    masks = [np.asarray(b[3]) for b in pipeline.evaluate_batches(src, 10, prefetch=0)]
    assert [int(m.sum()) for m in masks] == [10, 10, 3]


def test_device_put_batch_named_sharding_one_device():
    src = toy_source()
    idx = np.array([3, 9, 1, 40])
    plain = pipeline.device_put_batch(src, idx)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    sharded = pipeline.device_put_batch(src, idx, sharding)
    assert [a.dtype for a in plain] == [jnp.uint8, jnp.int32, jnp.int32]
    for a, b in zip(plain, sharded):
        assert b.sharding == sharding and a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    ev = next(iter(pipeline.evaluate_batches(src, 8, sharding=sharding, prefetch=0)))
    assert len(ev) == 4 and ev[3].sharding == sharding


MULTI_DEVICE = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from dcnn_dd.data import pipeline, sources
    assert len(jax.devices()) == 4, jax.devices()

    class Counting(sources.ArraySource):
        def take(self, indices):
            calls.append(np.asarray(indices).tolist())
            return super().take(indices)

    calls = []
    rng = np.random.default_rng(0)
    src = Counting(rng.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8), rng.integers(0, 4, 30), 4, "toy")
    idx = np.array([29, 3, 3, 17, 0, 8, 22, 11])
    mesh = Mesh(np.array(jax.devices()), ("data",))
    images, labels, ids = pipeline.device_put_batch(src, idx, NamedSharding(mesh, P("data")))
    want_images, want_labels = sources.ArraySource.take(src, idx)
    np.testing.assert_array_equal(np.asarray(images), want_images)
    np.testing.assert_array_equal(np.asarray(labels), want_labels)
    np.testing.assert_array_equal(np.asarray(ids), idx)
    for shard in images.addressable_shards:
        assert shard.data.shape == (2, 6, 5, 3)
        np.testing.assert_array_equal(np.asarray(shard.data), want_images[shard.index[0]])
    # each device's rows were loaded once, for images and labels together
    assert sorted(calls) == sorted(idx.reshape(4, 2).tolist()), calls
    calls.clear()
    rep = pipeline.device_put_batch(src, idx, NamedSharding(mesh, P()))
    assert len(calls) == 1 and rep[0].sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(rep[0]), want_images)
    batches = list(pipeline.evaluate_batches(src, 8, sharding=NamedSharding(mesh, P("data"))))
    assert sum(int(np.asarray(b[3]).sum()) for b in batches) == 30
    print("OK")
""")


def test_device_put_batch_four_devices_subprocess():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # no inherited device-count flag
    env.update(JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", MULTI_DEVICE], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
