"""The time-to-accuracy protocol (experiments.payoff): its arithmetic, the composed Adam state,
continuing a phase in memory, and the tiny preset end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tests.conftest import random_sub_vars

import dcnn_dd as dd
from dcnn_dd.models import PlainCNN
from dcnn_dd.train.checkpoint import InMemoryCheckpoints
from dcnn_dd.tree import leaves_by_path
from dcnn_dd.train.state import compose_opt_state, create_state, default_tx, params_plan, train_step
from experiments import payoff


# ------------------------------------------------------------------ arithmetic on synthetic histories
def test_first_hit_is_the_first_evaluation_at_or_above_the_target():
    times, accs = [10.0, 20.0, 30.0, 40.0], [0.70, 0.80, 0.79, 0.85]
    assert payoff.first_hit(times, accs, 0.80) == 20.0  # at, not only above
    assert payoff.first_hit(times, accs, 0.81) == 40.0  # not the later drop back
    assert payoff.first_hit(times, accs, 0.60) == 10.0
    assert payoff.first_hit(times, accs, 0.90) is None  # never reached
    assert payoff.first_hit([], [], 0.5) is None


def test_ratio_stats_pairs_seeds_and_skips_never_reached():
    s = payoff.ratio_stats([30.0, 45.0, None], [60.0, 50.0, 40.0])
    assert s["ratios"] == [0.5, 0.9, None]
    assert s["seeds_reached"] == 2
    assert s["ratio_mean"] == pytest.approx(0.7)
    assert s["ratio_sd"] == pytest.approx(np.sqrt(((0.5 - 0.7) ** 2 + (0.9 - 0.7) ** 2) / 1))  # sample sd
    s = payoff.ratio_stats([None, 10.0], [20.0, None])  # GNet-R never reached: no ratio either
    assert s["ratios"] == [None, None] and s["ratio_mean"] is None and s["ratio_sd"] is None
    assert payoff.ratio_stats([8.0], [10.0])["ratio_sd"] is None  # one seed: no spread to report


def test_clock_counts_only_inside_and_keeps_its_offset():
    clock = payoff.Clock(offset=5.0)
    assert clock.now() == 5.0
    with clock:
        inside = clock.now()
    after = clock.now()
    assert 5.0 <= inside <= after
    assert clock.now() == after  # stopped outside the block


# ------------------------------------------------------------------ the composed optimiser state
def test_composed_adam_state_is_block_diagonal_with_zeros_elsewhere():
    grid = dd.Grid.uniform((28, 28), 2, size=16)
    net = PlainCNN(features=(8, 8, 16, 16), pool_after=(1, 3), fc=(16,))
    sub = net.subnet(4)
    xs = dd.decompose_input(jax.random.normal(jax.random.PRNGKey(0), (8, 28, 28, 1)), grid)
    labels = jnp.arange(8) % 10
    tx = default_tx()
    states = []
    for k, v in enumerate(random_sub_vars(sub, xs[0][:1], 4)):
        st = create_state({kk: vv for kk, vv in v.items() if kk != "intermediates"}, tx)
        st, _ = train_step(sub, tx, st, xs[k], labels, 1e-3)  # its own moments
        states.append(st)
    stacked = dd.stack([s.opt_state for s in states])
    plan = dd.plan_for(net, sub, grid, input_shape=(1, 28, 28, 1))
    gparams = dd.compose(plan, dd.stack([s.variables for s in states]))["params"]
    composed = compose_opt_state(plan, stacked, gparams)
    opt, stacked = composed.inner_state[0], stacked.inner_state[0]  # Adam's state inside inject_hyperparams
    assert isinstance(opt, optax.ScaleByAdamState)
    assert int(opt.count) == int(states[0].opt_state.inner_state[0].count) == 1
    assert float(composed.hyperparams["learning_rate"]) == pytest.approx(1e-3)  # sub-network 0's (all equal)
    # the same structure and shapes as a fresh global optimiser state
    fresh = tx.init(gparams)
    assert jax.tree.structure(composed) == jax.tree.structure(fresh)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(composed), jax.tree.leaves(fresh)))
    pplan = params_plan(plan, gparams)
    for name in ("mu", "nu"):
        g, subs = getattr(opt, name), getattr(stacked, name)
        back = leaves_by_path(dd.decompose(pplan, {"params": g}))
        glob, sub_leaves = leaves_by_path({"params": g}), leaves_by_path({"params": subs})
        assert back
        for k, rule in pplan.rules.items():
            if "Head/bias" in k:  # (2.14): the output bias's moments are summed
                np.testing.assert_allclose(np.asarray(glob[k]), np.asarray(sub_leaves[k]).sum(0), rtol=1e-6)
            else:  # the diagonal blocks are the sub-networks' moments ...
                np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(sub_leaves[k]))
        # ... and there is nothing else: a hidden conv kernel has exactly the blocks' non-zeros
        kern = np.asarray(g["Conv_1"]["kernel"])
        assert np.count_nonzero(kern) == np.count_nonzero(np.asarray(subs["Conv_1"]["kernel"])) > 0
        assert np.count_nonzero(kern) < kern.size


# ------------------------------------------------------------------ continuing a phase in memory
def test_in_memory_store_continues_a_finished_phase():
    store = InMemoryCheckpoints()
    assert store.latest() is None
    store.save(3, {"w": 1}, {"epoch": 2, "done": True, "history": [1, 2]})
    state, meta = store.restore()
    assert store.latest() == 3 and state == {"w": 1} and meta["done"] is True
    meta["history"].append(99)  # the caller's copy
    store.reopen()
    assert store.restore()[1] == {"epoch": 2, "done": False, "history": [1, 2]}


def test_presets_default_is_the_confirmed_cases_and_the_screen_seed_is_held_out():
    default, screen = payoff.PRESETS["cpu-smoke"], payoff.PRESETS["screen"]
    assert {n: [v.name for v in vs] for n, vs in default.variants.items()} == {
        "exact": ["base", "snets=32+warmup"], "resnet": ["base", "regional"]}
    held_out = set(range(screen.first_seed, screen.first_seed + screen.seeds))
    assert held_out and not held_out & set(range(default.first_seed, default.first_seed + default.seeds))
    assert {v.name for v in screen.variants["exact"]} == {v.name for v in payoff.EXACT_VARIANTS}


@pytest.mark.parametrize("argv, message", [
    (["--variants", "nope"], "--variants ['nope']"),
    (["--networks", "vgg"], "--networks ['vgg']"),
    (["--seeds", "0"], "--seeds 0"),
    (["--set", "sed=1"], "--set sed: unknown key; known keys: dataset"),
    (["--set", "train_size=-5"], "train_size=-5"),
])
def test_bad_selections_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        payoff.main(["--preset", "tiny", "--out", str(tmp_path), "--no-progress", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing measured


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("payoff")
    results = payoff.main(["--preset", "tiny", "--out", str(out), "--no-progress"])
    return out, results


def test_tiny_preset_writes_the_protocol(tiny):
    out, results = tiny
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").exists() and (out / "payoff.png").stat().st_size > 0
    cases = data["cases"]
    assert {(c["network"], c["variant"]) for c in cases} == {
        ("exact", "base"), ("exact", "adam-state"), ("exact", "snets=2"), ("exact", "K=16"),
        ("resnet", "base"), ("resnet", "regional")}
    for c in cases:
        for key in ("snet_acc", "composed_acc", "seeds", "gnet_t_first_hit_s", "gnet_r_first_hit_s", "ratio_mean",
                    "ratio_sd", "gnet_t_final_acc", "gnet_r_final_acc"):
            assert key in c
        assert len(c["gnet_t_first_hit_s"]) == len(c["seeds"]) == len(c["gnet_r_first_hit_s"]) == 1
        assert len(c["snet_acc"]) == c["K"]
        # the first-hit times agree with the recorded curves and the target
        for s in c["seeds"]:
            t_curve, r_curve = c["curves"]["gnet_t"][str(s)], c["curves"]["gnet_r"][str(s)]
            assert c["gnet_t_first_hit_s"][0] == payoff.first_hit(t_curve["t"], t_curve["acc"], c["target"])
            assert c["gnet_r_first_hit_s"][0] == payoff.first_hit(r_curve["t"], r_curve["acc"], c["target"])
            # GNet-T's clock starts with the SNets: its first point (the composed start) comes after them
            assert t_curve["t"][0] > c["snet_s"][0] > 0
            assert all(b > a for a, b in zip(t_curve["t"], t_curve["t"][1:]))
            assert all(b > a for a, b in zip(r_curve["t"], r_curve["t"][1:]))
    by = {(c["network"], c["variant"]): c for c in cases}
    # the exact network: the composed start is the logit sum (Theorem 2.1)
    assert by["exact", "base"]["logit_gap_max"] <= 1e-4 * max(1.0, by["exact", "base"]["logit_scale"])
    assert by["exact", "base"]["composed_acc"] == pytest.approx(by["exact", "base"]["logit_sum_acc"], abs=1e-9)
    # variants that differ only after composition share the SNets; other budgets do not
    assert by["exact", "adam-state"]["snet_acc"] == by["exact", "base"]["snet_acc"]
    assert by["exact", "adam-state"]["snet_s"] == by["exact", "base"]["snet_s"]
    assert by["exact", "snets=2"]["snet_s"][0] > by["exact", "base"]["snet_s"][0]
    assert by["exact", "adam-state"]["composed_acc"] == by["exact", "base"]["composed_acc"]
    assert by["resnet", "regional"]["snet_acc"] == by["resnet", "base"]["snet_acc"]
    assert data["gnet_r_lr_sweep"]["exact"]["chosen"] in data["gnet_r_lr_sweep"]["exact"]["final_acc"]
    assert data["protocol"] == "short"
    assert data["rules"]["compilation"].startswith("counted on both sides")


def test_tiny_preset_resumes_from_its_cache(tiny):
    out, results = tiny
    again = payoff.main(["--preset", "tiny", "--out", str(out), "--no-progress"])
    assert again["meta"]["wall_s"] < results["meta"]["wall_s"]  # nothing trained again
    assert [c["gnet_t_first_hit_s"] for c in again["cases"]] == [c["gnet_t_first_hit_s"] for c in results["cases"]]


def test_restart_measures_each_pipeline_once(tmp_path, monkeypatch):
    """--restart measures again, but each pipeline once: the chosen rate's GNet-R on the first seed
    is the sweep's run, not a second one."""
    from experiments.payoff import analysis

    calls = []
    real = analysis.gnet_r
    monkeypatch.setattr(analysis, "gnet_r", lambda setup, seed, v, *a, **k: calls.append((seed, v.name))
                        or real(setup, seed, v, *a, **k))
    payoff.main(["--preset", "tiny", "--networks", "exact", "--variants", "base", "--out", str(tmp_path),
                 "--no-progress", "--restart"])
    sweep = [v.name for v in payoff.PRESETS["tiny"].lr_sweep["exact"]]
    assert len(sweep) == 2 and sorted(calls) == sorted((0, name) for name in sweep)  # not 3 runs


def test_engine_time_to_target_counts_everything_and_uses_first_hits():
    from dcnn_dd.train.composed_training import time_to_target

    comp = {"compose_s": 1.0, "eval_s": 0.5, "gnet_t_init_acc": 0.70}
    snets = [{"elapsed_s": 4.0}, {"elapsed_s": 8.0}]
    gnet_r = [{"val_acc": 0.75, "elapsed_s": 10.0}, {"val_acc": 0.82, "elapsed_s": 20.0},
              {"val_acc": 0.80, "elapsed_s": 30.0}]  # final 0.80, first reached at 20 s, not 30 s
    gnet_t = [{"val_acc": 0.79, "elapsed_s": 9.0}, {"val_acc": 0.81, "elapsed_s": 18.0}]
    out = time_to_target(comp, snets, gnet_t, gnet_r, selection_s=2.0)
    assert out["gnet_r_first_hit_s"] == 20.0
    assert out["time_to_gnet_r_acc_s"] == pytest.approx(2.0 + 8.0 + 1.0 + 0.5 + 18.0)
    assert out["payoff_ratio"] == pytest.approx(29.5 / 20.0)
    # the composed start already at the target: the pipeline ends with its first evaluation
    out = time_to_target({**comp, "gnet_t_init_acc": 0.80}, snets, gnet_t, gnet_r)
    assert out["time_to_gnet_r_acc_s"] == pytest.approx(8.0 + 1.5)
    # never reached: no time, no ratio
    out = time_to_target(comp, snets, gnet_t[:1], gnet_r)
    assert out["time_to_gnet_r_acc_s"] is None and out["payoff_ratio"] is None
    assert time_to_target(comp, snets, gnet_t, [])["gnet_r_first_hit_s"] is None
