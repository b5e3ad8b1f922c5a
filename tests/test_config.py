"""A configuration is validated when it is built, before a run directory is touched; invalid values
on the command line are one line on stderr and exit 2 (issue 15, points 1-2)."""

import pytest

import dcnn_dd as dd
from dcnn_dd.train.config import Config, build_grid
from dcnn_dd.train.schedules import Piecewise
from experiments import quickstart


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(train_size=-5), "train_size=-5"),
        (dict(test_size=0), "test_size=0"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(eval_batch_size=-1), "eval_batch_size"),
        (dict(extra_epochs=-1), "extra_epochs=-1"),
        (dict(snet_epochs=1.5), "snet_epochs"),
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(plateau_patience=0), "plateau_patience"),
        (dict(K=0), "K=0"),
        (dict(K=2), "4 sub-images, K=2"),
        (dict(snet_lr={"bas": 1e-3}), "snet_lr.*unknown key.*'bas'"),
        (dict(gnet_t_lr={"base": 1e-3, "milestones": [[10]]}), "gnet_t_lr.*milestones"),
        (dict(gnet_r_lr=-1e-3), "gnet_r_lr.*positive"),
        (dict(gnet_r_lr="fast"), "gnet_r_lr"),
        (dict(grid={"size": 16}), "grid.*'parts'"),
        (dict(grid={"parts": 2, "overlap": 2.5}), "overlap"),
        (dict(grid={"parts": 2, "szie": 16}), "unknown key.*szie"),
        (dict(grid={"paper": "imagenet"}), "unknown layout"),
        (dict(model={"name": "nope"}), "model name 'nope'"),
        (dict(model={"name": "plain", "featurs": [8]}), "model 'plain'"),
        (dict(model={"name": "plain", "features": [6, 6]}), "K=4"),  # widths not divisible by K
        (dict(augment="mixup"), "augment='mixup'"),
        (dict(strategy="pmap"), "strategy='pmap'"),
        (dict(inner="shard_map"), "inner='shard_map'"),
        (dict(image_size=(0, 32)), "image_size"),
    ],
)
def test_invalid_configurations_are_refused_when_built(kw, match):
    with pytest.raises(ValueError, match=match):
        Config(**kw)
    with pytest.raises(ValueError, match=match):  # replace and from_json validate too
        Config().replace(**kw)


def test_valid_configurations_pass():
    Config()
    quickstart.config()
    quickstart.config("resnet", tiny=True)
    Config(grid={"paper": "cifar-overlap"}, snet_lr={"base": 1e-3, "milestones": [[2, 0.1]]})
    Config(K=8, grid={"parts": [2, 4], "size": [16, 8]}, model={"name": "plain", "features": [8, 8]})
    Config(K=2, grid={"origins": [[0, 0], [0, 12]], "size": 16}, model={"name": "plain", "features": [8, 8]})
    back = Config.from_json(Config(image_size=[32, 32]).to_json())
    assert back.image_size == (32, 32)


def test_piecewise_from_json_names_the_problem():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bas'\].*'base' is missing"):
        Piecewise.from_json({"bas": 1e-3})
    assert Piecewise.from_json({"base": 1e-3, "milestones": [[2, 0.1]]})(3) == pytest.approx(1e-4)


def test_bad_grid_specs_and_grids_are_value_errors():
    with pytest.raises(ValueError, match="'parts'"):
        build_grid({"size": 16}, (28, 28, 1))
    with pytest.raises(ValueError, match="overlap=2.5"):
        dd.Grid.uniform((28, 28), 2, overlap=2.5)
    with pytest.raises(ValueError, match="size=16.5"):
        dd.Grid.uniform((28, 28), 2, size=16.5)
    with pytest.raises(ValueError, match="origin"):
        dd.Grid.from_origins((8, 8), [(0, 0.5)], 4)
    assert dd.Grid.uniform((28, 28), 2, overlap=4.0) == dd.Grid.uniform((28, 28), 2, overlap=4)


def test_a_bad_configuration_leaves_no_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        quickstart.main(["--tiny", "--no-progress", "--set", "train_size=-5", "--run-dir", str(run_dir)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train_size=-5" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_a_configuration_that_does_not_fit_the_data_leaves_no_run_directory(tmp_path):
    from dcnn_dd.train import run_algorithm1 as run

    # valid on its own, but these 16x16 boxes at origin 20 do not fit in the 28x28 images: refused before
    # the run directory exists
    bad = quickstart.config(tiny=True).replace(grid={"origins": [[0, 0], [0, 20], [20, 0], [20, 20]], "size": 16})
    with pytest.raises(ValueError, match="does not fit"):
        run(bad, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_num_devices_0_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        quickstart.main(["--tiny", "--no-progress", "--num-devices", "0", "--run-dir", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "num_devices=0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_run_directory_in_use_is_one_line_and_exit_2(tmp_path, capsys):
    """The command line's form of the run-directory lock: another live process's lock is refused
    with one line naming it, exit 2, and the directory is left as it was."""
    import json
    import subprocess
    import sys

    from dcnn_dd.train.checkpoint import LOCK_FILE, this_process

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / LOCK_FILE).write_text(json.dumps({**this_process(), "pid": other.pid, "process_start": None}))
        with pytest.raises(SystemExit) as e:
            quickstart.main(["--tiny", "--no-progress", "--run-dir", str(run_dir)])
    finally:
        other.kill()
        other.wait()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run directory ") and f"in use by process {other.pid}" in err, err
    assert len(err.strip().splitlines()) == 1 and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]
