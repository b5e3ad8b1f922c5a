"""The converged payoff protocol (experiments.payoff --preset converged): its schedules at E
epochs, its arithmetic, and its tiny form end to end with its resume."""

import json

import pytest

from experiments import payoff
from experiments.payoff import converged as cv


def _drops(sched: dict):
    return [(e, f) for e, f in sched["milestones"]]


def test_schedules_are_section_3_1_1s_at_e_epochs():
    p = cv.PRESETS["converged"]
    assert p.E == 20 and p.epochs() == {"gnet_r": 20, "snets": 12, "gnet_t": 8}  # 200 / 120 / 80 at 1/10
    n, r = cv._paper("gnet_r", 20)
    assert r["base"] == 1e-3 and _drops(r) == [(8, 0.1), (14, 0.1), (16, 0.1), (18, 0.5)]
    v = cv.GNET_T_VARIANTS
    assert _drops(v["paper"].snet_lr(20)) == [(6, 0.1), (8, 0.1), (10, 0.1)]
    assert v["paper"].gnet_t_lr(20) == {"base": 1e-4, "milestones": [[2, 0.1], [4, 0.1], [6, 0.5]]}
    assert v["restart"].gnet_t_lr(20) == {"base": 1e-3, "milestones": [[4, 0.1], [6, 0.1], [7, 0.5]]}
    assert v["restart-late"].gnet_t_lr(20) == {"base": 1e-3, "milestones": [[6, 0.1], [7, 0.1]]}
    assert v["restart-3e-3"].gnet_t_lr(20) == {"base": 3e-3, "milestones": [[4, 0.1], [6, 0.1], [7, 0.5]]}
    assert v["snets-flat"].snet_lr(20) == {"base": 1e-3, "milestones": [[10, 0.1]]}
    assert v["snets-flat"].gnet_t_lr(20) == v["restart"].gnet_t_lr(20)
    # the schedules are valid engine schedules
    from dcnn_dd.train.schedules import schedule_from_json
    assert schedule_from_json(v["restart"].gnet_t_lr(20))(7) == pytest.approx(1e-3 * 0.1 * 0.1 * 0.5)


def test_gpu_form_is_the_same_protocol_on_all_the_training_images():
    cpu, gpu = cv.PRESETS["converged"], cv.PRESETS["converged-gpu"]
    assert gpu.train_size == 60000 and gpu.strategy == "auto" and cpu.strategy == "sequential"
    assert gpu.networks == cpu.networks and (gpu.E, gpu.seeds, gpu.val_fraction) == (cpu.E, cpu.seeds, cpu.val_fraction)
    assert cv.stand_in(cpu).startswith("Fashion-MNIST (20,000 training images, 5,000 held out")
    assert "(48,000 training images, 12,000 held out" in cv.stand_in(gpu)
    assert "ResNet-8 (widths 16/32/64) for ResNet32, E = 20 global epochs for 200" in cv.stand_in(gpu)
    assert gpu.sweep_every_seed == cpu.sweep_every_seed == ("resnet",)  # the first look's comparison: the ResNet
    # a preset without the ResNet (a user's, or a cut one) says what stands in without it
    import dataclasses
    exact_only = dataclasses.replace(cpu, networks={"exact": cpu.networks["exact"]})
    assert "stands in for CIFAR-10, E = 20 global epochs for 200" in cv.stand_in(exact_only)


def test_variant_names_carry_the_pooling_only_where_regional_pooling_is_run():
    exact = cv.PRESETS["converged"].networks["exact"][1]
    resnet = cv.PRESETS["converged"].networks["resnet"][1]
    assert [cv.variant_name(v, p, exact) for v, p in exact] == ["paper", "restart", "restart-3e-3", "restart-late",
                                                                "snets-flat"]
    assert [cv.variant_name(v, p, resnet) for v, p in resnet] == [
        "gap/paper", "gap/restart", "gap/restart-3e-3", "regional/paper", "regional/restart", "regional/restart-3e-3"]


def test_convergence_rule_and_statistics():
    accs = [0.5] * 15 + [0.900, 0.901, 0.903, 0.902, 0.9015]
    assert cv.last_fifth_spread(accs, 20) == pytest.approx(0.002)  # epochs 17..20: 0.901 .. 0.903
    assert cv.last_fifth_spread([0.1, 0.2, 0.3], 3) == pytest.approx(0.1)  # at least 2 epochs
    s = cv.stats([0.9, 0.8, None])
    assert s["per_seed"] == [0.9, 0.8, None] and s["mean"] == pytest.approx(0.85)
    assert s["sd"] == pytest.approx(0.0707107, rel=1e-5)
    assert cv.stats([0.9])["sd"] is None and cv.stats([None])["mean"] is None


def test_bad_converged_selection_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        payoff.main(["--preset", "converged-tiny", "--out", str(tmp_path), "--no-progress", "--variants", "base"])
    assert e.value.code == 2 and "--variants ['base']" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("converged")
    results = payoff.main(["--preset", "converged-tiny", "--networks", "exact", "--out", str(out), "--no-progress"])
    return out, results


def test_tiny_converged_preset_writes_the_protocol(tiny):
    out, _ = tiny
    data = json.loads((out / "results.json").read_text())
    assert data["protocol"] == "converged" and data["E"] == 5 and data["seeds"] == [0, 1]
    assert data["epochs"] == {"gnet_r": 5, "snets": 3, "gnet_t": 2}
    assert (out / "payoff_converged.png").stat().st_size > 0 and "| exact | paper | 2 |" in (out / "results.md").read_text()
    sweep = data["gnet_r_lr_sweep"]["exact"]
    assert set(sweep["final_val_acc"]) == {"0.001", "0.003"} and sweep["chosen"] in sweep["final_val_acc"]
    by = {c["variant"]: c for c in data["cases"]}
    assert set(by) == {"paper", "restart"}
    for c in by.values():
        for key in ("network", "variant", "seeds", "E", "gnet_t_final", "gnet_r_final", "gnet_t_first_hit_s",
                    "gnet_r_first_hit_s", "ratios", "ratio_mean", "ratio_sd", "gnet_t_test", "gnet_r_test"):
            assert key in c
        assert c["gnet_r_lr"]["base"] == float(sweep["chosen"])  # every seed at the chosen rate
        for i, s in enumerate(c["seeds"]):
            t, r = c["curves"]["gnet_t"][str(s)], c["curves"]["gnet_r"][str(s)]
            assert len(t["acc"]) == 1 + 2 and len(r["acc"]) == 5  # the composed start + 0.4E; E
            target = r["acc"][-1]  # per seed: GNet-R's final validation accuracy
            assert c["targets"][i] == target == c["gnet_r_final"]["per_seed"][i]
            assert c["gnet_t_final"]["per_seed"][i] == t["acc"][-1]
            assert c["gnet_t_first_hit_s"][i] == payoff.first_hit(t["t"], t["acc"], target)
            assert c["gnet_r_first_hit_s"][i] == payoff.first_hit(r["t"], r["acc"], target) is not None
            assert t["t"][0] > c["snet_s"][i] > 0  # GNet-T's clock includes the SNets
            assert 0 <= c["gnet_t_test"]["per_seed"][i] <= 1 and 0 <= c["gnet_r_test"]["per_seed"][i] <= 1
        assert c["gnet_t_final"]["sd"] is not None  # two seeds: a spread
        assert c["logit_gap_max"] <= 1e-3  # the exact network: the composed start is the logit sum (Theorem 2.1)
    # paper and restart share the SNets (one run per seed) and differ after the composition
    assert by["paper"]["snet_s"] == by["restart"]["snet_s"] and by["paper"]["snet_acc"] == by["restart"]["snet_acc"]
    assert by["paper"]["composed_acc"] == by["restart"]["composed_acc"]
    assert by["paper"]["gnet_t_lr"] != by["restart"]["gnet_t_lr"]
    assert by["paper"]["curves"]["gnet_t"]["0"]["acc"][1:] != by["restart"]["curves"]["gnet_t"]["0"]["acc"][1:]
    assert set(data["convergence"]["exact"]) == {"0", "1"}
    # the tiny preset sweeps the exact network's GNet-R on every seed: GNet-T against GNet-R at each rate
    every = sweep["every_seed"]
    assert set(every) == {"0.001", "0.003"} and len(every["0.001"]["final_val_acc"]["per_seed"]) == 2
    assert every["0.001"]["final_val_acc"]["per_seed"][0] == sweep["final_val_acc"]["0.001"]  # seed 0: the sweep
    for c in by.values():
        assert c["gnet_t_minus_gnet_r_by_rate"][sweep["chosen"]] == c["gnet_t_minus_gnet_r"]  # the chosen rate
        for lr, d in c["gnet_t_minus_gnet_r_by_rate"].items():
            assert d["per_seed"] == pytest.approx([t - r for t, r in zip(
                c["gnet_t_final"]["per_seed"], every[lr]["final_val_acc"]["per_seed"])])
    assert "| exact | restart | 0.001" in data["tables_md"]["converged, against GNet-R at each rate of the sweep"]


def test_tiny_converged_preset_resumes_pipeline_by_pipeline(tiny):
    out, results = tiny
    cache = out / "cache" / "converged" / "converged-tiny"
    (cache / "exact-gnet_t-restart-seed1.json").unlink()  # a run cut in its last pipeline
    again = payoff.main(["--preset", "converged-tiny", "--networks", "exact", "--out", str(out), "--no-progress"])
    before = {c["variant"]: c for c in results["cases"]}
    for c in again["cases"]:
        old = before[c["variant"]]
        assert c["gnet_r_final"] == old["gnet_r_final"] and c["curves"]["gnet_r"] == old["curves"]["gnet_r"]
        if c["variant"] != "restart":
            assert c["curves"] == old["curves"]  # from the cache: not measured again
        else:  # measured again: the same computation (seeded), its own clock
            assert c["curves"]["gnet_t"]["0"] == old["curves"]["gnet_t"]["0"]
            assert c["curves"]["gnet_t"]["1"]["acc"] == old["curves"]["gnet_t"]["1"]["acc"]
            assert c["curves"]["gnet_t"]["1"]["t"] != old["curves"]["gnet_t"]["1"]["t"]
    one = payoff.main(["--preset", "converged-tiny", "--networks", "exact", "--seeds", "1", "--out", str(out),
                       "--no-progress"])  # a cut to whole seeds: from the cache, nothing trained
    assert one["seeds"] == [0] and one["meta"]["wall_s"] < 0.5 * results["meta"]["wall_s"]
    assert all(c["gnet_t_final"]["per_seed"] == before[c["variant"]]["gnet_t_final"]["per_seed"][:1]
               for c in one["cases"])


def test_restart_measures_each_pipeline_once(tmp_path, monkeypatch):
    """--restart measures again, but each pipeline once: the sweep's first-seed runs, the chosen
    rate's baseline and the every-seed rates are one GNet-R run per (seed, rate)."""
    from experiments.payoff import analysis

    calls = []
    real = analysis.gnet_r
    monkeypatch.setattr(analysis, "gnet_r", lambda setup, seed, v, *a, **k: calls.append((seed, v.name))
                        or real(setup, seed, v, *a, **k))
    out = payoff.main(["--preset", "converged-tiny", "--networks", "exact", "--variants", "paper", "--seeds", "1",
                       "--out", str(tmp_path), "--no-progress", "--restart"])
    assert sorted(calls) == [(0, "lr=0.001"), (0, "lr=0.003")]  # not 9 runs: one per seed and rate
    sweep = out["gnet_r_lr_sweep"]["exact"]
    assert sweep["curves"][sweep["chosen"]]["acc"] == out["cases"][0]["curves"]["gnet_r"]["0"]["acc"]
