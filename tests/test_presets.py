"""Every experiment preset builds exactly the configurations it built before the experiments became
packages (issue 16 point 5): ``tests/data/presets.json`` was generated from the code before the move
(``python -m tests.test_presets > tests/data/presets.json``) and pins every ``Config.to_json()``
(and every other field of the presets' plans) that the measured numbers in docs/ depend on."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib

import pytest

EXPECTED = pathlib.Path(__file__).with_name("data") / "presets.json"


def presets_module(name: str):
    """Where an experiment's presets live: ``experiments.<name>.config`` (before the move: the module)."""
    try:
        return importlib.import_module(f"experiments.{name}.config")
    except ModuleNotFoundError:
        return importlib.import_module(f"experiments.{name}")


def snap(x):
    """A JSON form of a preset's plan: configurations by their ``to_json()``, other dataclasses field
    by field, dict keys as strings."""
    if dataclasses.is_dataclass(x) and hasattr(x, "to_json"):
        return {"__type__": type(x).__name__, **x.to_json()}
    if dataclasses.is_dataclass(x):
        return {"__type__": type(x).__name__, **{f.name: snap(getattr(x, f.name)) for f in dataclasses.fields(x)}}
    if isinstance(x, dict):
        return {str(k): snap(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [snap(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def quickstart() -> dict:
    m = presets_module("quickstart")
    return {f"{model}{'-tiny' if tiny else ''}": snap(m.config(model, tiny=tiny))
            for model in ("plain", "resnet") for tiny in (False, True)}


def payoff() -> dict:
    m = presets_module("payoff")
    out = {}
    for name, p in m.PRESETS.items():
        configs = {}
        for net, spec in p.networks.items():
            for K in sorted({4} | {v.K for v in p.variants[net]}):  # noqa: N806
                for pooling in sorted({"global"} | {v.pooling for v in p.variants[net]}):
                    configs[f"{net}-K{K}-{pooling}"] = snap(m.pipeline_config(p, spec, K, pooling, p.first_seed))
        out[name] = {"preset": snap(p), "configs": configs}
    return out


def plans(name: str) -> dict:
    m = presets_module(name)
    return {preset: snap(make()) for preset, make in m.PRESETS.items()}


def snapshot() -> dict:
    return {"quickstart": quickstart(), "payoff": payoff(), "cifar": plans("cifar"),
            "partitions": plans("partitions"), "cnn_dnn": plans("cnn_dnn"), "layer_parallel": plans("layer_parallel")}


def without_new_defaults(got, expected):
    """``got`` without the ``Config`` (and payoff ``Variant``) fields added since ``presets.json`` was
    written (absent from ``expected``) where they hold their defaults: a new field at its default changes no preset, a
    new field set by a preset is a change."""
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        return [without_new_defaults(g, e) for g, e in zip(got, expected)]
    if not (isinstance(got, dict) and isinstance(expected, dict)):
        return got
    out = {k: without_new_defaults(v, expected.get(k)) for k, v in got.items()}
    if got.get("__type__") == "Config":
        from dcnn_dd.train import Config

        defaults = Config().to_json()
        out = {k: v for k, v in out.items() if k in expected or k not in defaults or v != defaults[k]}
    elif got.get("__type__") == "Variant":  # the payoff protocol's variants (a field added: schedule_json)
        from experiments.payoff.config import Variant

        defaults = {f.name: f.default for f in dataclasses.fields(Variant)}
        out = {k: v for k, v in out.items() if k in expected or k not in defaults or v != defaults[k]}
    return out


@pytest.mark.parametrize("experiment", ["quickstart", "payoff", "cifar", "partitions", "cnn_dnn", "layer_parallel"])
def test_presets_unchanged(experiment):
    expected = json.loads(EXPECTED.read_text())[experiment]
    got = json.loads(json.dumps(snapshot()[experiment]))
    assert without_new_defaults(got, expected) == expected


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1, sort_keys=True))
