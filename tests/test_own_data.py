"""Your own data through the engine (issue 24, point 1): in-memory arrays, an image folder and a
TFDS dataset with its own keys, each end to end through ``run_algorithm1`` with a resume, on tiny
data; a held-out validation split; the data's fingerprint in the run directory and the refusal to
resume on other data; every bad input a one-line error before anything is written.

The three runs share one tiny configuration (8x8 images, K = 2 sub-images of 8x6, a valid-padding
CNN of widths 4, 4 and 8): float RGB arrays with a validation split, an RGB PNG folder registered
by name, and TFDS's ``beans`` (its own split names) mocked by ``tfds.testing``; the last two have
the same shapes, so the second compiles nothing new (the suite's compilation cache)."""

import functools
import json
import shutil

import jax
import numpy as np
import pytest

from dcnn_dd.data import sources
from dcnn_dd.data.sources import from_arrays, image_folder, register_dataset, tfds_source

QUIET = {"progress": False, "log": lambda *a, **k: None}
RESULTS = ("snet_acc", "gnet_t_init_acc", "theorem_2_1_max_abs_diff", "gnet_t_trained_acc", "gnet_r_trained_acc",
           "snet_test_acc", "gnet_t_test_acc", "gnet_r_test_acc", "validation")


def tiny(**kw):
    from dcnn_dd.train import Config

    base = dict(dataset="mine", model={"name": "plain", "features": [4, 4], "pool_after": [], "fc": [8]}, K=2,
                grid={"parts": [1, 2], "size": [8, 6]}, batch_size=16, eval_batch_size=32, snet_epochs=1,
                gnet_t_epochs=1, gnet_r_epochs=1, plateau_patience=None, strategy="vmap")
    return Config(**{**base, **kw})


def arrays(n, seed, shape=(8, 8, 3), classes=3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    return (x if dtype == np.float32 else (x * 255).astype(np.uint8)), rng.integers(0, classes, n)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(sources, "DATASETS", dict(sources.DATASETS))
    return sources


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ============================================================================ in-memory arrays
@pytest.fixture(scope="module")
def arrays_run(tmp_path_factory):
    """Float32 RGB arrays, a quarter of the 96 training images held out for validation."""
    from dcnn_dd.train import run_algorithm1

    (x, y), (xt, yt) = arrays(96, 0), arrays(40, 1)
    config = tiny(val_fraction=0.25, val_seed=3)
    run_dir = tmp_path_factory.mktemp("arrays")
    data = {"train": from_arrays(x, y, num_classes=3, name="mine"), "test": from_arrays(xt, yt, num_classes=3)}
    return config, run_dir, data, (x, y), run_algorithm1(config, run_dir, **data, **QUIET).summary


def test_arrays_with_a_validation_split(arrays_run):
    """The plateau/stopping/target evaluation runs on the held-out validation images; the test set is
    evaluated once per trained network, after its phase; the run directory records the data."""
    from dcnn_dd.train import Steps, build_setup
    from dcnn_dd.train.checkpoint import load_variables

    config, run_dir, data, (x, y), s = arrays_run
    assert s["validation"] == "held_out" and len(s["snet_test_acc"]) == 2
    for k in ("gnet_r_test_acc", "gnet_t_test_acc", "gnet_r_test_top5", "gnet_t_test_top5"):
        assert 0.0 <= s[k] <= 1.0, k
    assert s["theorem_2_1_max_abs_diff"] < 1e-4  # float RGB images compose as uint8 ones do
    setup = build_setup(config, **data)
    assert (len(setup.train_source), len(setup.val_source), len(setup.test_source)) == (72, 24, 40)
    # the split is a partition of the training arrays, the same for every seed (val_seed)
    rows = {r.tobytes() for r in np.concatenate([setup.train_source.images, setup.val_source.images])}
    assert rows == {r.tobytes() for r in x}
    again = build_setup(config.replace(seed=5), **data)
    np.testing.assert_array_equal(again.val_source.images, setup.val_source.images)
    # float images: divided by 1, not 255; the mean is the remaining training images' own
    assert setup.pixel_scale == 1.0
    np.testing.assert_allclose(setup.mean, setup.train_source.images.mean(axis=(0, 1, 2)), rtol=1e-5)
    # the per-epoch records are the validation set's, the test entries the test set's
    gnet_t = load_variables(run_dir, "gnet_t")
    steps = Steps(setup)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in history if r.get("phase") == "gnet_t"][-1]
    assert float(steps.global_evaluator()(gnet_t)["acc"]) == last["val_acc"]
    assert float(steps.global_evaluator(source=setup.test_source)(gnet_t)["acc"]) == s["gnet_t_test_acc"]
    assert [r["phase"] for r in history if r["phase"].endswith("_test")] == ["gnet_r_test", "snets_test", "gnet_t_test"]
    recorded = json.loads((run_dir / "data.json").read_text())
    assert [recorded[k]["size"] for k in ("train", "val", "test")] == [72, 24, 40]
    assert recorded["train"]["fingerprint"] == setup.train_source.fingerprint()
    assert recorded["train"]["pixel_scale"] == 1.0 and recorded["train"]["image_shape"] == [8, 8, 3]
    assert recorded["mean"] == [float(m) for m in setup.mean]


def test_arrays_run_cut_after_the_sub_networks_resumes_bitwise(arrays_run, tmp_path):
    from dcnn_dd.train import run_algorithm1
    from tests.runs import final_params

    config, run_dir, data, _, s = arrays_run
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut)
    shutil.rmtree(cut / "ckpt" / "gnet_t")
    for f in ("gnet_t_test.json", "summary.json"):
        (cut / f).unlink()
    again = run_algorithm1(config, cut, **data, **QUIET).summary
    a, b = final_params(run_dir, "gnet_t"), final_params(cut, "gnet_t")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert {k: again[k] for k in RESULTS} == {k: s[k] for k in RESULTS}


def test_a_resume_on_other_data_is_refused(arrays_run):
    from dcnn_dd.train import run_algorithm1
    from dcnn_dd.train.checkpoint import DataMismatchError

    config, run_dir, data, (x, y), _ = arrays_run
    before = sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    x2 = x.copy()
    x2[7, 3, 3, 0] += 0.5  # one pixel
    with pytest.raises(DataMismatchError) as e:
        run_algorithm1(config, run_dir, train=from_arrays(x2, y, num_classes=3, name="mine"), test=data["test"],
                       **QUIET)
    msg = one_line(e)
    old = json.loads((run_dir / "data.json").read_text())["train"]["fingerprint"]
    assert "the data changed" in msg and "--restart" in msg and "another run directory" in msg
    assert old in msg and "train " in msg and "test " not in msg  # the changed split, both fingerprints
    assert sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before


# ============================================================================ an image folder, by name
def write_folder(root, rng, layout):
    """``layout``: {split folder or '': {class: [(h, w), ...]}} of random RGB PNGs (one JPEG)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for split, classes in layout.items():
        for cls, sizes in classes.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i, (h, w) in enumerate(sizes):
                im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                im.save(d / (f"{i}.jpg" if i == 0 else f"{i}.png"))
    (root / "README.txt").write_text("not an image")
    return root


def test_image_folder_registered_by_name_trains_and_resumes(registry, tmp_path):
    """train/ and test/ folders of RGB images of several sizes (resized to 8x8), registered as a
    dataset name; the test folder lacks a class and still shares the training labels; a re-run of
    the finished run trains nothing and gives the same summary."""
    from dcnn_dd.train import run_algorithm1

    sizes = [(8, 8), (10, 9), (12, 8)] * 3
    root = write_folder(tmp_path / "pets", np.random.default_rng(0), {
        "train": {"cat": sizes[:8], "dog": sizes, "owl": sizes[:7]}, "test": {"cat": sizes[:4], "dog": sizes[:5]}})
    test = image_folder(root, "test", image_size=(8, 8))
    assert test.class_names == ("cat", "dog", "owl") and test.num_classes == 3
    assert test.labels.tolist() == [0] * 4 + [1] * 5 and test.images.dtype == np.uint8 and test.pixel_scale == 255.0
    register_dataset("pets", functools.partial(image_folder, root, image_size=(8, 8)))
    config = tiny(dataset="pets", gnet_r_epochs=0)
    run_dir = tmp_path / "run"
    s = run_algorithm1(config, run_dir, **QUIET).summary
    recorded = json.loads((run_dir / "data.json").read_text())
    assert recorded["dataset"] == "pets" and recorded["train"]["size"] == 24 and recorded["test"]["size"] == 9
    assert recorded["train"]["class_names"] == ["cat", "dog", "owl"] and recorded["train"]["pixel_scale"] == 255.0
    assert s["validation"] == "test" and s["gnet_t_test_acc"] == s["gnet_t_trained_acc"]  # test = validation
    assert s["gnet_r_test_acc"] is None and s["theorem_2_1_max_abs_diff"] < 1e-4
    steps = sorted(p.name for p in (run_dir / "ckpt" / "gnet_t").iterdir())
    again = run_algorithm1(config, run_dir, **QUIET).summary
    assert {k: again[k] for k in RESULTS} == {k: s[k] for k in RESULTS}
    assert sorted(p.name for p in (run_dir / "ckpt" / "gnet_t").iterdir()) == steps


# ============================================================================ a TFDS dataset, its own keys
def test_tfds_dataset_with_its_own_split_names_and_a_given_validation_source(tmp_path):
    """TFDS's ``beans`` (RGB, 3 classes; its test set is the split 'validation' here), resized to
    8x8, passed as sources with a validation source of their own; a re-run of the finished run gives
    the same summary.  Other keys: smallnorb's ``label_category``."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from dcnn_dd.train import run_algorithm1

    def data():
        train = tfds_source("beans", "train", image_size=(8, 8))
        test = tfds_source("beans", "test", split_names={"test": "validation"}, image_size=(8, 8))
        return {"train": train, "test": test, "val": train.subset(np.arange(8))}

    config, run_dir = tiny(dataset="beans", gnet_r_epochs=0), tmp_path / "run"
    with tfds.testing.mock_data(num_examples=32):
        d = data()
        assert d["test"].tfds_split == "validation" and d["train"].num_classes == 3
        s = run_algorithm1(config, run_dir, **d, **QUIET).summary
    recorded = json.loads((run_dir / "data.json").read_text())
    assert [recorded[k]["size"] for k in ("train", "val", "test")] == [32, 8, 32]
    assert s["validation"] == "held_out" and len(s["snet_test_acc"]) == 2 and 0 <= s["gnet_t_test_acc"] <= 1
    with tfds.testing.mock_data(num_examples=32):  # the mock draws the same examples again
        again = run_algorithm1(config, run_dir, **data(), **QUIET).summary
        assert {k: again[k] for k in RESULTS} == {k: s[k] for k in RESULTS}
        norb = tfds_source("smallnorb", "train", label_key="label_category", image_size=(8, 8))
        assert norb.num_classes == 5 and norb.image_shape == (8, 8, 1) and norb.target_shape == ()
        images, labels = norb.take(np.array([3, 1]))
        assert images.shape == (2, 8, 8, 1) and images.dtype == np.uint8 and labels.dtype == np.int32
        with pytest.raises(ValueError, match=r"features \[.*'label_category'.*\]; expected 'image' and 'label'"):
            tfds_source("smallnorb", "train")
        histology = tfds_source("colorectal_histology", "test", image_size=(8, 8),
                                split_names={"train": "train[:80%]", "test": "train[80%:]"})
        assert histology.tfds_split == "train[80%:]" and histology.num_classes == 8


# ============================================================================ the arrays as they come
def test_from_arrays_takes_arrays_as_they_come():
    import jax.numpy as jnp

    gray = from_arrays(jnp.zeros((5, 6, 7)), jnp.array([0, 2, 1, 0, 2]))  # JAX arrays, (N, H, W)
    assert gray.image_shape == (6, 7, 1) and gray.images.dtype == np.float32 and gray.num_classes == 3
    assert gray.pixel_scale == 1.0 and gray.target_shape == () and gray.labels.dtype == np.int32
    u8 = from_arrays(np.zeros((4, 6, 6, 5), np.uint8), np.zeros(4, np.int64), num_classes=10)  # any channels
    assert u8.image_shape == (6, 6, 5) and u8.pixel_scale == 255.0 and u8.num_classes == 10
    multi = from_arrays(np.zeros((4, 6, 6, 1)), np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]]))
    assert multi.num_classes == 3 and multi.target_shape == (3,) and multi.labels.dtype == np.float32
    assert from_arrays(np.zeros((4, 6, 6, 1)), np.eye(4, 2), num_classes=2).target_shape == (2,)  # float 0/1
    reg = from_arrays(np.zeros((4, 6, 6, 1)), np.ones((4, 2, 3)))
    assert reg.num_classes is None and reg.target_shape == (2, 3) and reg.take([1, 3])[1].shape == (2, 2, 3)
    assert reg.subset(2).target_shape == (2, 3) and reg.subset(2).num_classes is None
    # the fingerprint: the content, not the object
    x, y = arrays(6, 0)
    a, b = from_arrays(x, y, num_classes=3), from_arrays(x.copy(), y.copy(), num_classes=3, name="other")
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 32
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 3
    assert from_arrays(x, y2, num_classes=3).fingerprint() != a.fingerprint()
    assert a.subset(5).fingerprint() != a.fingerprint()


@pytest.mark.parametrize("images, labels, kw, match", [
    (np.zeros((4, 8)), np.zeros(4, int), {}, r"images must be \(N, H, W, C\) or \(N, H, W\), got shape \(4, 8\)"),
    (np.zeros((2, 4, 8, 8, 1)), np.zeros(2, int), {}, "got shape"),
    (np.zeros((4, 8, 8, 1), np.int64), np.zeros(4, int), {}, r"uint8 \(0..255\) or float, got int64"),
    (np.zeros((4, 8, 8, 1), bool), np.zeros(4, int), {}, "uint8"),
    (np.zeros((4, 3, 16, 16), np.uint8), np.zeros(4, int), {}, "channels-first.*np.moveaxis"),
    (np.full((4, 8, 8, 1), np.nan), np.zeros(4, int), {}, "NaN or Inf"),
    (np.zeros((4, 8, 8, 1)), np.array([0, 1, 2, 3]), {"num_classes": 3}, r"labels span 0..3, outside 0..2"),
    (np.zeros((4, 8, 8, 1)), np.array([0, -1, 2, 1]), {}, "must be >= 0"),
    (np.zeros((4, 8, 8, 1)), np.array([0, -1, 2, 1]), {"num_classes": 3}, "outside 0..2"),
    (np.zeros((4, 8, 8, 1)), np.zeros(3, int), {}, r"4 images but labels of shape \(3,\)"),
    (np.zeros((4, 8, 8, 1)), np.array([[0, 2], [1, 1], [0, 0], [1, 0]]), {}, "must be 0 or 1"),
    (np.zeros((4, 8, 8, 1)), np.zeros((4, 3), int), {"num_classes": 2}, "3 classes, num_classes=2"),
    (np.zeros((4, 8, 8, 1)), np.array([0.0, np.inf, 1.0, 2.0]), {}, "regression targets hold NaN or Inf"),
    (np.zeros((4, 8, 8, 1)), np.array(["a", "b", "c", "d"]), {}, "labels must be integer class labels"),
    (np.zeros((4, 8, 8, 1)), np.zeros(4, int), {"num_classes": 0}, "num_classes=0 must be a positive integer"),
])
def test_from_arrays_bad_inputs_are_one_line_errors(images, labels, kw, match):
    with pytest.raises(ValueError, match=match) as e:
        from_arrays(images, labels, **kw)
    one_line(e)


# ============================================================================ bad inputs: before anything is written
def _mismatch(kind):
    (x, y), (xt, yt) = arrays(32, 0), arrays(16, 1)
    train, test = from_arrays(x, y, num_classes=3), from_arrays(xt, yt, num_classes=3)
    if kind == "image shape":
        return {"train": train, "test": from_arrays(*arrays(16, 1, shape=(12, 12, 3)), num_classes=3)}
    if kind == "classes":  # inferred per split: the test arrays lack the last class
        return {"train": from_arrays(x, y), "test": from_arrays(xt, np.minimum(yt, 1))}
    if kind == "target shape":
        return {"train": train, "test": from_arrays(xt, np.zeros((16, 3), np.float32), num_classes=3)}
    if kind == "pixel scale":
        return {"train": train, "test": from_arrays(*arrays(16, 1, dtype=np.uint8), num_classes=3)}
    if kind == "val":
        return {"train": train, "test": test, "val": from_arrays(*arrays(8, 2, shape=(8, 8, 1)), num_classes=3)}
    if kind == "no test":
        return {"train": train}
    return {"train": train, "test": test}


@pytest.mark.parametrize("kind, config, match", [
    ("image shape", {}, r"train and test data differ in image shape: train \(8, 8, 3\), test \(12, 12, 3\)"),
    ("classes", {}, r"differ in number of classes: train 3, test 2; give both the same num_classes"),
    ("target shape", {}, r"differ in target shape: train \(\), test \(3,\)"),
    ("pixel scale", {}, r"differ in pixel scale .*: train 1.0, test 255.0; give both uint8 images or both float"),
    ("val", {}, r"train and val data differ in image shape"),
    ("no test", {}, "pass train= and test= together"),
    ("ok", {"image_size": (12, 12)}, r"image_size=\(12, 12\), but the train data .* has images of \(8, 8\)"),
    ("ok", {"val_fraction": 0.01}, "val_fraction=0.01 of the 32 training samples holds out 0"),
])
def test_data_that_do_not_fit_fail_before_the_run_directory(tmp_path, kind, config, match):
    from dcnn_dd.train import run_algorithm1

    with pytest.raises(ValueError, match=match) as e:
        run_algorithm1(tiny(**config), tmp_path / "run", **_mismatch(kind), **QUIET)
    one_line(e)
    assert not (tmp_path / "run").exists()


def test_val_fraction_and_a_val_source_exclude_each_other_and_are_checked(tmp_path):
    from dcnn_dd.train import build_setup

    d = _mismatch("ok")
    with pytest.raises(ValueError, match="val_fraction=0.25 holds out validation data, and val= gives some"):
        build_setup(tiny(val_fraction=0.25), **d, val=d["test"])
    for bad in (1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match=r"val_fraction=.*expected a number in \[0, 1\)"):
            tiny(val_fraction=bad)
    with pytest.raises(ValueError, match="val_seed"):
        tiny(val_seed=-1)


def test_image_folder_errors(tmp_path, registry):
    from dcnn_dd.train import run_algorithm1

    rng = np.random.default_rng(0)
    with pytest.raises(sources.DatasetNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    register_dataset("empty", functools.partial(image_folder, tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"has no class sub-folders: put the images of each class in") as e:
        run_algorithm1(tiny(dataset="empty"), tmp_path / "run", **QUIET)  # by name: before anything is written
    one_line(e)
    assert not (tmp_path / "run").exists()
    flat = write_folder(tmp_path / "flat", rng, {"": {}})
    (flat / "a.png").write_bytes((tmp_path / "flat" / "README.txt").read_bytes())
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_folder(flat)
    root = write_folder(tmp_path / "classes", rng, {"": {"a": [(8, 8)] * 4, "b": [(8, 8), (9, 9)]}})
    (root / "c").mkdir()
    with pytest.raises(ValueError, match=r"no images \(.png, .jpg.*\) in the class folder\(s\) c") as e:
        image_folder(root)
    one_line(e)
    (root / "c").rmdir()
    with pytest.raises(ValueError, match=r"images of different sizes .*; pass image_size=\(H, W\)"):
        image_folder(root)
    train, test = image_folder(root, "train", image_size=(8, 8)), image_folder(root, "test", image_size=(8, 8))
    assert (len(train), len(test)) == (5, 1) and train.class_names == ("a", "b")  # test_fraction 0.2 of 6
    gray = image_folder(root, image_size=(8, 8), channels="gray")
    assert gray.image_shape == (8, 8, 1) and len(gray) == 6
    with pytest.raises(ValueError, match="channels='cmyk'"):
        image_folder(root, channels="cmyk")
    (root / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken.png: not a readable image"):
        image_folder(root, image_size=(8, 8))
    split = write_folder(tmp_path / "split", rng, {"train": {"a": [(8, 8)]}, "test": {"a": [(8, 8)]}})
    with pytest.raises(ValueError, match=r"has the split folders \['train', 'test'\]: pass split="):
        image_folder(split)


def test_dataset_names_registry_and_unknown_names(tmp_path, registry):
    from dcnn_dd.train import run_algorithm1

    register_dataset("my_data", lambda split: from_arrays(*arrays(32 if split == "train" else 16, 0), num_classes=3))
    assert "my_data" in sources.registered_datasets() and len(sources.load("my_data", "test")) == 16
    assert len(sources.load("my_data", "train", path="/ignored", image_size=(8, 8))) == 32  # only what it takes
    register_dataset("my_data", lambda split: None)  # a name of one's own: registered again, replaced
    with pytest.raises(ValueError, match="built in"):
        register_dataset("digits", lambda split: None)
    with pytest.raises(TypeError, match="callable"):
        register_dataset("x", 3)
    with pytest.raises(ValueError, match="non-empty"):
        register_dataset("", lambda split: None)
    with pytest.raises(TypeError, match="a NoneType is not a data source, it lacks __len__"):
        run_algorithm1(tiny(dataset="my_data"), tmp_path / "run", **QUIET)
    unknown = r"dataset 'no_such_data_xyz' is neither registered \(.*digits.*my_data.*\)"
    with pytest.raises(ValueError, match=unknown) as e:
        run_algorithm1(tiny(dataset="no_such_data_xyz"), tmp_path / "run", **QUIET)
    one_line(e)
    assert not (tmp_path / "run").exists()
