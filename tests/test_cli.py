"""experiments.cli: the generic ``--set key=value`` override (parsing, dotted keys, JSON against
strings, unknown keys), applied to a Config and validated by it, and the clean-message path."""

from __future__ import annotations

import dataclasses

import pytest

from dcnn_dd.cnn_dnn.train import CNNDNNConfig
from dcnn_dd.train.config import Config
from experiments import cli


def test_values_are_json_when_they_parse_else_strings():
    assert cli.parse_value("[8,8]") == [8, 8]
    assert cli.parse_value("1e-3") == 1e-3 and isinstance(cli.parse_value("3"), int)
    assert cli.parse_value("null") is None and cli.parse_value("true") is True
    assert cli.parse_value('{"base": 0.1, "milestones": [[1, 10.0]]}') == {"base": 0.1, "milestones": [[1, 10.0]]}
    assert cli.parse_value("vmap") == "vmap" and cli.parse_value("") == "" and cli.parse_value("[8,") == "[8,"


def test_parse_sets_in_order_later_wins():
    assert cli.parse_sets(["seed=1", "strategy=vmap", "model.features=[8,8]", "seed=2"]) == {
        "seed": 2, "strategy": "vmap", "model.features": [8, 8]}
    assert cli.parse_sets(["a==b"]) == {"a": "=b"}  # the value is everything after the first '='
    assert cli.parse_sets(None) == {} and cli.parse_sets([]) == {}
    for bad in ("seed", "=1", "model..features=1", ".seed=1"):
        with pytest.raises(ValueError, match="expected key=value"):
            cli.parse_sets([bad])


def test_override_a_config_with_dotted_keys():
    c = Config(model={"name": "plain", "features": [32, 32, 64, 64], "pool_after": [1, 3], "fc": [128]})
    got = cli.override(c, {"seed": 3, "strategy": "vmap", "model.features": [8, 8, 16, 16], "grid.size": 14,
                           "train_size": None, "image_size": [28, 28]})
    assert got.seed == 3 and got.strategy == "vmap" and got.train_size is None and got.image_size == (28, 28)
    assert got.model == {"name": "plain", "features": [8, 8, 16, 16], "pool_after": [1, 3], "fc": [128]}
    assert got.grid == {"parts": 2, "size": 14}
    assert c.model["features"] == [32, 32, 64, 64] and c.grid == {"parts": 2, "size": 16}  # not mutated
    assert cli.override(c, {}) is c
    got.validate()
    # two keys into the same field both apply
    g = cli.override(c, {"model.features": [8, 8, 8, 8], "model.fc": [16]})
    assert g.model["features"] == [8, 8, 8, 8] and g.model["fc"] == [16]


def test_override_is_validated_by_the_config():
    c = Config()
    with pytest.raises(ValueError, match="train_size"):
        cli.override(c, {"train_size": -5})
    with pytest.raises(ValueError, match="strategy"):
        cli.override(c, {"strategy": "warp"})
    with pytest.raises(ValueError, match="not a dict-valued field"):
        cli.override(c, {"seed.x": 1})
    with pytest.raises(ValueError, match="unknown key; known keys: dataset, train_size"):
        cli.override(c, {"sed": 1})


def test_split_overrides_by_target_and_unknown_keys():
    targets = {"": Config, "cnn_dnn": CNNDNNConfig}
    got = cli.split_overrides({"seed": 1, "cnn_dnn.dnn_epochs": 5, "model.features": [8]}, targets)
    assert got == {"": {"seed": 1, "model.features": [8]}, "cnn_dnn": {"dnn_epochs": 5}}
    assert cli.override(CNNDNNConfig(), got["cnn_dnn"]).dnn_epochs == 5
    assert "cnn_dnn.dnn_epochs" in cli.known_keys(targets) and "seed" in cli.known_keys(targets)
    for bad in ("sed", "cnn_dnn.dnn_epoch", "cnn_dnn", "modell.features"):
        with pytest.raises(ValueError, match=f"--set {bad}: unknown key; known keys: dataset, .*cnn_dnn.inner"):
            cli.split_overrides({bad: 1}, targets)


def test_other_dataclasses_as_targets():
    @dataclasses.dataclass(frozen=True)
    class Problem:
        name: str
        steps: int = 3

    got = cli.split_overrides({"steps": 7}, {"": Problem})
    assert cli.override(Problem("p"), got[""]) == Problem("p", 7)

    @dataclasses.dataclass(frozen=True)
    class Nested:
        d: dict = dataclasses.field(default_factory=lambda: {"a": {"x": 1}, "b": 2})

    n = cli.override(Nested(), {"d.a.y": 3, "d.c.z": 4})  # a nested dotted key, creating missing dicts
    assert n.d == {"a": {"x": 1, "y": 3}, "b": 2, "c": {"z": 4}}
    with pytest.raises(ValueError, match="'b' holds 2, not a dict"):
        cli.override(Nested(), {"d.b.x": 1})


def test_the_parser_and_the_clean_error(capsys):
    p = cli.parser("quickstart", "doc")
    args = p.parse_args(["--set", "seed=1", "--set", "model.features=[8,8]"])
    assert args.set == ["seed=1", "model.features=[8,8]"] and args.preset == "cpu-smoke"
    assert p.parse_args([]).set == []
    with pytest.raises(SystemExit) as e, cli.cli_errors():
        cli.split_overrides(cli.parse_sets(["sed=1"]), cli.config_targets())
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set sed: unknown key; known keys: dataset, train_size") and "Traceback" not in err


def test_override_every_config_of_a_plan():
    @dataclasses.dataclass
    class Case:
        name: str
        config: Config
        extra: CNNDNNConfig = dataclasses.field(default_factory=CNNDNNConfig)

    @dataclasses.dataclass
    class Plan:
        cases: list
        sweep: dict
        note: str = "x"

    plan = Plan([Case("a", Config(seed=1)), Case("b", Config(seed=2))], {"base": Config(), "sizes": [32, 64]})
    got = cli.override_all(plan, {Config: {"strategy": "vmap"}, CNNDNNConfig: {"dnn_epochs": 5}})
    assert [c.config.strategy for c in got.cases] == ["vmap", "vmap"] and got.sweep["base"].strategy == "vmap"
    assert [c.config.seed for c in got.cases] == [1, 2] and [c.extra.dnn_epochs for c in got.cases] == [5, 5]
    assert got.sweep["sizes"] == [32, 64] and got.note == "x" and plan.cases[0].config.strategy == "auto"
    assert cli.override_all(plan, {}) is plan
    args = type("Args", (), {"targets": {"": Config, "cnn_dnn": CNNDNNConfig},
                             "overrides": {"": {"seed": 7}, "cnn_dnn": {}}})()
    assert [c.config.seed for c in cli.apply(plan, args).cases] == [7, 7]


def test_main_checks_the_keys_passes_the_overrides_and_records_them(tmp_path, capsys):
    import json

    seen = {}

    def run(args):
        seen["plan"] = cli.apply([Config(seed=0), Config(seed=5)], args)
        return {"entries": []}

    out = tmp_path / "res"
    res = cli.main("demo", "A demo.", run, ["--preset", "tiny", "--out", str(out), "--set", "strategy=vmap",
                                            "--set", "model.fc=[16]"])
    assert [c.strategy for c in seen["plan"]] == ["vmap", "vmap"] and [c.seed for c in seen["plan"]] == [0, 5]
    assert seen["plan"][0].model["fc"] == [16]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["meta"]["overrides"] == res["meta"]["overrides"] == {"strategy": "vmap", "model.fc": [16]}
    assert "--set strategy=vmap" in on_disk["meta"]["command"]
    assert "Overrides (`--set`): `strategy=\"vmap\"`, `model.fc=[16]`" in (out / "results.md").read_text()
    with pytest.raises(SystemExit) as e:
        cli.main("demo", "A demo.", run, ["--out", str(tmp_path / "bad"), "--set", "nope=1"])
    assert e.value.code == 2 and "--set nope: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_results_directory_keeps_its_overrides(tmp_path, capsys):
    """Cached measurements are keyed by measurement, not configuration: other overrides on the same
    --out are refused (exit 2) unless --restart; the same ones (or none, twice) resume."""
    calls = []

    def run(args):
        (args.out / "cache").mkdir(parents=True, exist_ok=True)  # something measured
        calls.append(args.overrides[""])
        return {"entries": []}

    out = str(tmp_path / "res")
    cli.main("demo", "A demo.", run, ["--out", out])
    cli.main("demo", "A demo.", run, ["--out", out])
    with pytest.raises(SystemExit) as e:
        cli.main("demo", "A demo.", run, ["--out", out, "--set", "seed=1"])
    assert e.value.code == 2 and "measurements made with --set overrides none, not {'seed': 1}" in capsys.readouterr().err
    cli.main("demo", "A demo.", run, ["--out", out, "--set", "seed=1", "--restart"])
    cli.main("demo", "A demo.", run, ["--out", out, "--set", "seed=1"])
    with pytest.raises(SystemExit):
        cli.main("demo", "A demo.", run, ["--out", out])
    assert calls == [{}, {}, {"seed": 1}, {"seed": 1}]


def test_import_makes_a_users_registered_names_known(tmp_path, monkeypatch, capsys):
    """--import MODULE (a .py file or a dotted name) runs the user's registrations before the
    configuration is read, so --set dataset=NAME finds a dataset registered there; a module that
    is not there is exit 2 with one line."""
    from dcnn_dd.data import sources
    from experiments.quickstart.analysis import main as quickstart

    monkeypatch.setattr(sources, "DATASETS", dict(sources.DATASETS))
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("import functools\nfrom dcnn_dd.data import load_digits, register_dataset\n"
                      "register_dataset('my_digits', lambda split: load_digits(split))\n")
    seen = []

    def run(args):
        from dcnn_dd.data import load

        seen.append(len(load("my_digits", "test")))
        return {"entries": []}

    cli.main("demo", "A demo.", run, ["--out", str(tmp_path / "res"), "--import", str(plugin),
                                      "--set", "dataset=my_digits"])
    assert seen == [449]  # digits' test split: round(0.25 * 1,797)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other_plugin.py").write_text("from dcnn_dd.data import load_digits, register_dataset\n"
                                             "register_dataset('my_digits_2', lambda split: load_digits(split))\n")
    cli.main("demo", "A demo.", run, ["--out", str(tmp_path / "res2"), "--import", "other_plugin"])
    assert "my_digits_2" in sources.registered_datasets()
    with pytest.raises(SystemExit) as e:
        quickstart(["--tiny", "--import", "no_such_plugin_xyz", "--run-dir", str(tmp_path / "q")])
    assert e.value.code == 2 and "--import no_such_plugin_xyz: No module named" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
