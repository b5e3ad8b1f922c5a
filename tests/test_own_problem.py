"""docs/own_problem.md ("Your own problem through the engine") runs as written: its blocks, in
order and in one namespace, in a temporary directory (they write ``results/...``).  A Linen model
of your own with Dropout on in-memory arrays (a held-out validation split, AdamW, a warm-up +
cosine schedule), its trained networks read back with ``load_trained``, the same model on a PNG
folder registered by name, and a regression task; the run resumes (a re-run trains nothing)."""

import jax
import numpy as np
import pytest

from tests.docs_pages import own_problem_blocks


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page's blocks run one after another; yields (namespace, printed lines per block)."""
    import contextlib
    import io
    import os

    from dcnn_dd.data import sources
    from dcnn_dd.models import registry

    blocks = own_problem_blocks()
    assert len(blocks) == 4, "the page's four blocks: arrays, load_trained, image folder, regression"
    cwd, ns, out = os.getcwd(), {}, []
    os.chdir(tmp_path_factory.mktemp("own_problem"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "MODELS", dict(registry.MODELS))  # the page registers "mynet"
        mp.setattr(sources, "DATASETS", dict(sources.DATASETS))  # and "digits_folder"
        try:
            for page_name, block in blocks:
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    exec(compile(block, page_name, "exec"), ns)  # noqa: S102
                out.append(buf.getvalue().strip().splitlines())
            yield ns, out
        finally:
            os.chdir(cwd)


def test_arrays_with_a_validation_split_and_the_composition_exact(page):
    ns, out = page
    s = ns["result"].summary
    assert s["validation"] == "held_out" and ns["config"].val_fraction == 0.1
    assert s["theorem_2_1_max_abs_diff"] < 1e-4  # valid padding, flatten head: exact, Dropout off in evaluation
    assert len(s["snet_test_acc"]) == 4 and all(0.1 < a <= 1 for a in s["snet_test_acc"])
    assert s["gnet_t_test_acc"] > 0.5 and s["gnet_r_test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert out[0][-1].startswith("test accuracy: SNets")
    # the optimiser and the per-step schedule are recorded as given
    import json
    cfg = json.loads(open("results/own_digits/config.json").read())["config"]
    assert cfg["optimizer"] == {"name": "adamw", "weight_decay": 1e-4} and cfg["gnet_t_lr"]["name"] == "warmup_cosine"


def test_load_trained_predicts_the_summary_accuracies(page):
    ns, out = page
    s, labels = ns["result"].summary, ns["labels"]
    n = len(labels) - 1500
    assert round(ns["accuracy"] * n) == round(s["gnet_t_test_acc"] * n)  # the same correct answers: raw images in
    snets = ns["snets"].predict(ns["images"][1500:, :, :, None])
    assert snets.shape == (4, 297, 10)
    assert [int((lg.argmax(-1) == labels[1500:]).sum()) for lg in snets] == [round(a * n) for a in s["snet_test_acc"]]
    assert out[1][-1] == "(4, 297, 10)"
    with pytest.raises(ValueError, match="uint8 images, but this gnet_t was trained on float images"):
        ns["gnet_t"].predict((ns["images"][1500:, :, :, None] * 255).astype(np.uint8))


def test_a_rerun_resumes_and_trains_nothing(page):
    ns, _ = page
    again = ns["run_algorithm1"](ns["config"], "results/own_digits", train=ns["train"], test=ns["test"], progress=False,
                                 log=lambda *a, **k: None)
    assert again.summary == ns["result"].summary
    for k in ("gnet_t", "gnet_r", "snets"):  # the trained variables, read back from the last checkpoints
        a, b = jax.tree.leaves(getattr(again, k)), jax.tree.leaves(getattr(ns["result"], k))
        assert len(a) == len(b) > 0 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_image_folder_trains_the_same_model(page):
    ns, _ = page
    s = ns["folder_run"].summary
    assert s["validation"] == "held_out" and s["gnet_t_test_acc"] > 0.5
    import json
    data = json.loads(open("results/own_folder/data.json").read())
    assert data["train"]["pixel_scale"] == 255.0 and data["dataset"] == "digits_folder"  # uint8 PNGs


def test_regression_composes_to_the_mean_and_monitors_val_loss(page):
    ns, out = page
    r = ns["reg_run"].summary
    assert (r["task"], r["monitor"], r["monitor_mode"]) == ("regression", "val_loss", "min")
    assert r["theorem_2_1_max_abs_diff"] < 1e-4  # the composed network is the mean of the sub-networks (2.22)
    centres = ns["centres"][:1500]
    constant = float(np.mean((centres - centres.mean(0)) ** 2))  # the best constant prediction's loss
    assert r["gnet_t_trained"]["val_loss"] < constant  # it learned where the ink is
    assert out[3][-1].startswith("val_loss min")
