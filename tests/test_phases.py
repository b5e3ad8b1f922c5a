"""The phase runner (dcnn_dd.train.phases): entries in order, each reading the results before it;
cached Compute values computed once and forgotten on restart; Deferred phases built when reached;
optional phases skipped without epochs; extra epochs only under a stopping rule; metrics in order."""

import json

import pytest

from dcnn_dd.train.checkpoint import RunDir
from dcnn_dd.train.loop import TrainData
from dcnn_dd.train.phases import Compute, Deferred, Train, run_phases
from tests.test_loop import toy_phase, toy_source


def _train(name, epochs=2, **kw):
    """A Train entry of test_loop's linear model; ``init`` starts it from its fresh state."""
    phase, state, seen = toy_phase(name, epochs=epochs)
    entry = Train(name, epochs, phase.schedule, phase.step, phase.evaluate, TrainData(toy_source(), 16, 0),
                  init=lambda r: state, **kw)
    return entry, seen


def test_entries_run_in_order_and_read_earlier_results(tmp_path):
    calls = []

    def count(r):
        calls.append(sorted(k for k in r if k != "histories"))
        return {"n": len(calls)}

    first, seen = _train("first", keep=lambda st: int(st.step))
    entries = [Compute("a", count, cache=True, record=True), first,
               Compute("b", lambda r: {"kept": r["first"], "epochs": len(r["histories"]["first"])})]
    results, histories = run_phases(entries, RunDir(tmp_path, {}))
    assert calls == [[]] and results["a"] == {"n": 1}
    assert results["b"] == {"kept": results["first"], "epochs": 2} and results["first"] == 8  # steps taken
    assert [r.get("phase") for r in histories["first"]] == ["first", "first"] and histories["a"] == [{"n": 1}]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("phase", "a") for x in lines] == ["a", "first", "first"]  # list order
    assert json.loads((tmp_path / "a.json").read_text()) == {"n": 1}
    assert len(seen) == 8  # 64 samples / batch 16, 2 epochs

    # re-run: the cached value is read, the finished phase trains nothing
    first, seen = _train("first", keep=lambda st: int(st.step))
    again, _ = run_phases([Compute("a", count, cache=True, record=True), first], RunDir(tmp_path, {}))
    assert calls == [[]] and again["a"] == {"n": 1} and seen == [] and again["first"] == results["first"]

    # restart: the cached value is computed again
    first, _ = _train("first")
    restarted, _ = run_phases([Compute("a", count, cache=True), first], RunDir(tmp_path, {}, restart=True),
                              restart=True)
    assert restarted["a"] == {"n": 2}


def test_deferred_optional_and_stopping_rule(tmp_path):
    built = []

    def later(r):
        built.append(r["choice"])
        entry, _ = _train("later", epochs=1, extra_epochs=3, until=lambda r: (lambda h: len(h) >= 2))
        return entry

    skipped, seen_skipped = _train("skipped", epochs=0, optional=True)
    no_rule, _ = _train("no_rule", epochs=1, extra_epochs=3)  # no stopping rule: no extra epochs
    none, seen_none = _train("none", epochs=0, extra_epochs=3)  # not even with 0 epochs
    entries = [Compute("choice", lambda r: "x"), skipped, Deferred("later", later), no_rule, none]
    _, histories = run_phases(entries, RunDir(tmp_path, {}))
    assert built == ["x"] and "skipped" not in histories and seen_skipped == []
    assert len(histories["later"]) == 2  # 1 epoch + extra epochs until the rule holds
    assert len(histories["no_rule"]) == 1
    assert histories["none"] == [] and seen_none == []


def test_metrics_file_is_written_when_every_phase_is_skipped(tmp_path):
    skipped, _ = _train("skipped", epochs=0, optional=True)
    _, histories = run_phases([Compute("c", lambda r: 1), skipped], RunDir(tmp_path, {}))
    assert histories == {} and (tmp_path / "metrics.jsonl").read_text() == ""


def test_bad_phase_lists_are_refused(tmp_path):
    a, _ = _train("a")
    with pytest.raises(ValueError, match="unique"):
        run_phases([a, Compute("a", lambda r: 1)], RunDir(tmp_path, {}))
    with pytest.raises(ValueError, match="unique"):
        run_phases([Compute("histories", lambda r: 1)], RunDir(tmp_path, {}))
    with pytest.raises(ValueError, match="built a phase named"):
        run_phases([Deferred("x", lambda r: _train("y")[0])], RunDir(tmp_path / "b", {}))


def test_algorithm1_phase_list_and_the_plan_time_charged_to_compose():
    """algorithm1_phases only binds its phase functions (building the list uses no step), and the
    plan, derived when the setup is built, is still charged to GNet-T's pipeline: compose_s =
    setup.plan_s + the composition."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from dcnn_dd import plan_for
    from dcnn_dd.composition import compose
    from dcnn_dd.train import Config, build_setup
    from dcnn_dd.train.composed_training import PHASES, algorithm1_phases, compose_snets

    config = Config(train_size=64, test_size=32, batch_size=32, snet_epochs=1, gnet_t_epochs=0, gnet_r_epochs=0,
                    model={"name": "plain", "features": [8, 8, 16, 16], "fc": [16]}, strategy="sequential")
    setup = build_setup(config)
    assert setup.plan.verification is not None and setup.plan.verification.exact and setup.plan_s > 0
    phases = algorithm1_phases(setup, steps=object())  # a "steps" without a single step: none is used yet
    assert tuple(p.name for p in phases) == PHASES
    with pytest.raises(ValueError, match="without its plan"):
        algorithm1_phases(dataclasses.replace(setup, plan=None))
    sub_shape = (1, *setup.grid.sub_shape, setup.image_shape[-1])
    shapes = jax.eval_shape(lambda: setup.sub.init(jax.random.PRNGKey(0), jnp.zeros(sub_shape)))
    rng = np.random.default_rng(0)  # K stacked sub-networks (random values: initialising them is slow)
    sub_vars = jax.tree.map(lambda s: rng.normal(size=(config.K, *s.shape)).astype(s.dtype), shapes)
    out = compose_snets(dataclasses.replace(setup, plan_s=100.0), {"snets": (sub_vars, None)})
    assert 100.0 < out["compose_s"] < 200.0
    fresh = plan_for(setup.model, setup.sub, setup.grid, input_shape=(1, *setup.image_shape), verify=False)
    expected = jax.device_get(compose(fresh, sub_vars))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out["variables"]), jax.tree.leaves(expected)))
