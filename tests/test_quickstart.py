"""The main job end to end (tiny variant) and the pipeline's fault handling, with real
processes: SIGKILL and Ctrl-C (SIGINT) at any point, then the same command resumes and ends
with parameters bitwise equal to an uninterrupted run."""

import json
import signal

import numpy as np
import pytest

from tests import runs

PHASES = ("gnet_r", "snets", "gnet_t")
KEYS = ("snet_acc", "gnet_t_init_acc", "theorem_2_1_max_abs_diff", "gnet_t_trained_acc", "gnet_r_trained_acc",
        "time_subnets_s", "time_gnet_t_s", "time_gnet_r_s", "time_to_gnet_r_acc_s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    p = runs.run(runs.quickstart_cmd(d))
    return d, p


def test_quickstart_outputs(reference):
    d, p = reference
    s = json.loads((d / "summary.json").read_text())
    assert set(KEYS) <= set(s)
    assert len(s["snet_acc"]) == 4 and all(0.0 <= a <= 1.0 for a in s["snet_acc"])
    # Theorem 2.1 on the test set, theorem-exact network: float rounding only
    assert s["theorem_2_1_max_abs_diff"] < 1e-4
    assert all(s[k] > 0 for k in ("time_subnets_s", "time_gnet_t_s", "time_gnet_r_s"))
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in lines]
    assert phases.count("gnet_r") == 2 and phases.count("snets") == 1 and phases.count("compose") == 1
    assert phases.count("gnet_t") == s["epochs"]["gnet_t_run"] >= 1
    assert all(len(r["val_acc"]) == 4 for r in lines if r["phase"] == "snets")
    for png in ("accuracy.png", "phase_times.png"):
        assert (d / png).stat().st_size > 5000
    assert "Theorem 2.1" in p.stdout and "GNet-R trained" in p.stdout
    # a finished run, re-run, trains nothing: same records (wall times included), same summary
    before = (d / "metrics.jsonl").read_text()
    runs.run(runs.quickstart_cmd(d))
    assert (d / "metrics.jsonl").read_text() == before
    s2 = json.loads((d / "summary.json").read_text())
    assert {k: s2[k] for k in KEYS} == {k: s[k] for k in KEYS}


def test_load_trained_predicts_the_summary_accuracies_from_raw_images(reference):
    """docs/api.md's "After training" block on the reference run directory: load_trained rebuilds
    GNet-T, GNet-R and the SNets from the directory (no data), and the argmax of predict on the raw
    uint8 test images counts exactly the correct answers behind the run's accuracies (the training
    mean, no augmentation, the sub-images applied inside predict)."""
    from dcnn_dd.train import load_trained
    from tests.docs_pages import inference_block

    d, _ = reference
    page, block = inference_block()
    assert block.count('"results/quickstart"') == 1
    scope: dict = {}
    exec(compile(block.replace('"results/quickstart"', repr(str(d))), page, "exec"), scope)  # noqa: S102
    s = json.loads((d / "summary.json").read_text())
    last = {}
    for line in (d / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        last[r["phase"]] = r
    images, labels = scope["images"], scope["labels"]
    n = len(labels)
    assert images.dtype == np.uint8 and n == 256 and scope["gnet_t"].finished

    def correct(out):
        return (out.argmax(-1) == labels).sum(-1)

    # GNet-T's last checkpoint is its last epoch (the tiny run may train one past gnet_t_epochs to reach GNet-R)
    assert correct(scope["logits"]) == round(last["gnet_t"]["val_acc"] * n)
    if s["epochs"]["gnet_t_run"] == s["epochs"]["gnet_t"]:
        assert correct(scope["logits"]) == round(s["gnet_t_trained_acc"] * n)
    np.testing.assert_array_equal(correct(scope["snets"].predict(images)), np.round(np.array(s["snet_acc"]) * n))
    assert correct(load_trained(d, "gnet_r").predict(images)) == round(s["gnet_r_trained_acc"] * n)


def _assert_bitwise_equal(a, b):
    for phase in PHASES:
        pa, pb = runs.final_params(a, phase), runs.final_params(b, phase)
        assert pa.keys() == pb.keys()
        for k in pa:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=f"{phase}{k}")


@pytest.mark.parametrize("phase", ["snets", "gnet_t"])
def test_sigkill_then_resume_is_bitwise_equal(reference, tmp_path, phase):
    ref, _ = reference
    proc = runs.start(runs.quickstart_cmd(tmp_path))
    runs.wait_for(lambda: runs.checkpoints(tmp_path, phase), proc)
    code, _, _ = runs.kill(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (tmp_path / "summary.json").exists()
    runs.run(runs.quickstart_cmd(tmp_path))
    _assert_bitwise_equal(ref, tmp_path)


def test_ctrl_c_saves_mid_epoch_and_resumes_bitwise(reference, tmp_path):
    ref, _ = reference
    proc = runs.start(runs.quickstart_cmd(tmp_path))
    # the sub-network phase's directory appears just before its first step compiles (seconds),
    # so the Ctrl-C lands inside that step: the loop finishes it and saves mid-epoch
    runs.wait_for(lambda: (tmp_path / "ckpt" / "snets").exists(), proc)
    code, out, err = runs.kill(proc, signal.SIGINT)
    assert code == 130, err[-2000:]
    assert "checkpoint saved" in err and "re-run the same command" in err and "Traceback" not in err
    (step,) = runs.checkpoints(tmp_path, "snets")
    meta = json.loads((tmp_path / "ckpt" / "snets" / str(step) / "meta" / "metadata").read_text())
    assert meta["epoch"] == 0 and 0 < meta["step_in_epoch"] < 8 and not meta["done"]
    runs.run(runs.quickstart_cmd(tmp_path))
    _assert_bitwise_equal(ref, tmp_path)


def test_other_config_in_same_run_dir_is_a_clear_error(reference, tmp_path):
    ref, _ = reference
    (tmp_path / "config.json").write_text((ref / "config.json").read_text())
    p = runs.run(runs.quickstart_cmd(tmp_path, "--set", "seed=1"), check=False)
    assert p.returncode == 2
    assert "another configuration" in p.stderr and "seed" in p.stderr and "Traceback" not in p.stderr


def test_resnet_option_runs_and_reports_its_deviation(tmp_path):
    """--model resnet (GAP, same padding, BatchNorm) leaves the theorem's setting: it must run
    end to end (here with the vmap strategy) and report the deviation, not hide it."""
    runs.run(runs.quickstart_cmd(tmp_path, "--model", "resnet", "--set", "strategy=vmap"))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(KEYS) <= set(s) and s["strategy"]["strategy"] == "vmap"
    assert s["theorem_2_1_max_abs_diff"] > 1e-3  # BatchNorm batch statistics and GAP break the logit sum
