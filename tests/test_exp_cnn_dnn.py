"""experiments.cnn_dnn end to end at its test scale (the ``tiny`` preset: K=4 with overlap, K=16
without), and transfer learning starting from exactly the pre-trained parameters.

Asserted: the results files and their schema; every model and aggregator evaluated once per case,
the global CNN once; the local CNNs are Algorithm 1's SNets (same checkpoints, same accuracies);
the transfer phase's initial state is bitwise the trained local CNNs and the trained DNN, and the
coherent model on it computes the two-stage CNN-DNN of the DNN phase (the same test logits, sample
by sample; the same accuracy); every phase timed.  Accuracies are not
asserted beyond their range (seconds of training)."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from dcnn_dd.train.checkpoint import load_variables
from experiments import cnn_dnn
from tests import runs


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_dnn")
    results = cnn_dnn.main(["--preset", "tiny", "--out", str(out), "--no-progress"])
    return out, results


def test_outputs_and_schema(result):
    out, r = result
    on_disk = runs.read_results(out, "cnn_dnn")
    assert "Fashion-MNIST" in on_disk["stand_in"]
    assert (out / on_disk["figures"]["cnn_dnn"]).stat().st_size > 5000
    md = (out / "results.md").read_text()
    assert "majority vote" in md and "wall time of every phase" in md and "transfer: initial" in md
    acc = [e for e in on_disk["entries"] if e["table"] == "cnn_dnn"]
    assert all(0 <= e["value"] <= 1 for e in acc)
    for K, overlap in ((4, True), (16, False)):  # noqa: N806
        rows = {e["row"] for e in acc if e.get("K") == K and e.get("overlap") is overlap}
        assert rows == {row for key, row in cnn_dnn.ROWS if key != "global"}, rows
        local = [e for e in on_disk["entries"] if e["table"] == "cnn_dnn-local" and e["K"] == K]
        assert len(local) == K
    assert [e["row"] for e in acc if "K" not in e] == ["global CNN"]  # trained once
    times = [e for e in on_disk["entries"] if e["table"] == "cnn_dnn-time"]
    assert {e["row"] for e in times} == {row for _, row in cnn_dnn.TIME_ROWS}
    assert all(e["value"] > 0 for e in times)


def test_local_cnns_are_the_snets(result):
    out, r = result
    for name, case in r["cases"].items():
        a1 = json.loads((out / "cases" / name / "summary.json").read_text())  # the Algorithm-1 run's summary
        # (the CNN-DNN summary copies its local/composed accuracies from that summary: comparing them tests
        # nothing; the run directory below is the evidence that the local CNNs are the SNets)
        assert len(a1["snet_acc"]) == case["K"]
        snets = load_variables(out / "cases" / name, "snets")
        assert snets["params"]["Conv_0"]["kernel"].shape[0] == case["K"]
        h = case["summary"]["epochs"]
        assert h["local"] == case["config"]["snet_epochs"]


@pytest.mark.parametrize("name", ["k4-overlap", "k16-nonoverlap"])
def test_transfer_starts_from_exactly_the_pretrained_parameters(result, name):
    out, r = result
    run_dir = out / "cases" / name
    snets = load_variables(run_dir, "snets")  # the trained local CNNs (latest = final checkpoint)
    dnn = load_variables(run_dir / "cnn_dnn", "dnn")  # the DNN trained on their frozen outputs
    init = load_variables(run_dir / "cnn_dnn", "transfer_init")

    def leaves(tree, prefix=""):
        if isinstance(tree, dict):
            for k, v in tree.items():
                yield from leaves(v, f"{prefix}/{k}")
        else:
            yield prefix, np.asarray(tree)

    pairs = [(snets["params"], init["params"]["local"]), (dnn["params"], init["params"]["dnn"])]
    n = 0
    for ref, got in pairs:
        ref, got = dict(leaves(ref)), dict(leaves(got))
        assert ref.keys() == got.keys()
        for k in ref:
            assert ref[k].dtype == got[k].dtype and np.array_equal(ref[k], got[k]), k  # bitwise
            n += 1
    assert n > 10
    # the coherent model with those parameters computes the two-stage CNN-DNN: same test accuracy ...
    s = r["cases"][name]["summary"]
    test_size = r["cases"][name]["config"]["test_size"]
    assert abs(s["acc"]["transfer_init"] - s["acc"]["dnn"]) <= 1 / test_size + 1e-9
    # ... and the same output on every test sample: the coherent forward on the transfer_init
    # checkpoint against train.py's pipeline (the engine's local outputs -> softmax -> the features
    # source -> the trained DNN) on the snets and dnn checkpoints
    coherent, two_stage, labels = _coherent_and_two_stage(name, init, snets, dnn, s["strategy"]["strategy"])
    assert coherent.shape == two_stage.shape == (test_size, 10)
    np.testing.assert_allclose(coherent, two_stage, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(coherent.argmax(-1), two_stage.argmax(-1))
    # not a comparison of constants: the outputs differ between samples by far more than the tolerance
    # (after seconds of training the argmax may be one class for all samples)
    assert float(np.ptp(two_stage, axis=0).max()) > 1e-3
    assert np.mean(coherent.argmax(-1) == labels) == pytest.approx(s["acc"]["transfer_init"], abs=1e-9)
    assert np.mean(two_stage.argmax(-1) == labels) == pytest.approx(s["acc"]["dnn"], abs=1e-9)
    # and training then moved away from them
    trained = load_variables(run_dir / "cnn_dnn", "transfer")
    assert not np.array_equal(trained["params"]["dnn"]["Head"]["kernel"], dnn["params"]["Head"]["kernel"])


def _coherent_and_two_stage(name, init, snets, dnn, strategy):
    """(test logits of the coherent CNN-DNN with the ``init`` variables, test logits of the two-stage
    pipeline as dnn_dd.cnn_dnn.train computes it from the ``snets`` and ``dnn`` variables, labels)."""
    import jax.numpy as jnp

    from dcnn_dd.cnn_dnn import train
    from dcnn_dd import sharding
    from dcnn_dd.train.setup import build_setup
    from dcnn_dd.train.steps import Steps, data_parallel_eval_step, evaluate, subnet_sharding

    case = next(c for c in cnn_dnn.tiny().cases if c.name == name)
    setup = build_setup(case.config)
    coh_eval = data_parallel_eval_step(train.coherent_model(setup, case.cnn_dnn), setup.data_mesh, setup.prep)
    coh = evaluate(coh_eval, sharding.put_global(init, sharding.replicated(setup.data_mesh)), setup.test_source,
                   setup.eval_batch, sharding.batch_sharding(setup.data_mesh), with_logits=True)
    sub_rep = subnet_sharding(setup, strategy)
    te = Steps(setup).subnet_evaluator(strategy, with_logits=True)(sharding.put_global(snets, sub_rep))
    feats = train.FeatureSource(np.swapaxes(train.softmax(te["logits"]), 0, 1), te["labels"],
                                setup.train_source.num_classes, "test probs")
    np.testing.assert_array_equal(np.asarray(coh["labels"]), feats.labels)  # the same samples, in the same order
    x, labels = feats.take(np.arange(len(feats)))
    ref = train.dnn_model(setup, case.cnn_dnn).apply(dnn, jnp.asarray(x))
    return np.asarray(coh["logits"]), np.asarray(ref), labels


def test_every_phase_ran_and_was_timed(result):
    _, r = result
    for name, case in r["cases"].items():
        s = case["summary"]
        cfg = case["cnn_dnn"]
        assert len(s["acc"]["local"]) == case["K"]
        for key in ("dnn", "average", "vote", "logit_sum", "composed", "coherent", "transfer"):
            assert 0 <= s["acc"][key] <= 1, (name, key)
        for key in ("local", "features", "dnn", "coherent", "transfer"):
            assert s["time_s"][key] > 0, (name, key)
        assert s["params"]["dnn_hidden"] == [max(64, 2 * case["K"] * 10)] * 2  # the documented default
        assert s["params"]["local_each"] * case["K"] == s["params"]["local_all"]
        assert s["params"]["local_each"] * case["K"] < s["params"]["global"]  # widths / K: about 1/K^2 of the weights
        assert 0 <= s["vote_tied_fraction"] <= 1
        assert cfg["coherent_epochs"] == 1 and cfg["transfer_epochs"] == 1
    glob = [n for n, c in r["cases"].items() if c["summary"]["acc"]["global"] is not None]
    assert glob == ["k4-overlap"]


def test_collected_report_includes_cnn_dnn(result, tmp_path):
    import shutil

    from experiments import report

    out, _ = result
    shutil.copytree(out, tmp_path / "cnn_dnn", ignore=shutil.ignore_patterns("cases"))
    text = report.build_report(tmp_path)
    assert "## Experiment `cnn_dnn` (preset tiny)" in text and "only the abstract is available" in text
    others = text.split("## Tables not in the paper")[1]
    assert "### cnn_dnn" in others and "### cnn_dnn-time" in others and "majority vote" in others
    assert "![Figure cnn_dnn](cnn_dnn/cnn_dnn.png)" in text
    assert "MISSING `cnn_dnn`" not in text and "MISSING `cifar`" in text


def test_rerun_resumes_from_the_checkpoints(result):
    """The same call again trains nothing (every phase is done) and reports the same numbers."""
    from dcnn_dd.cnn_dnn import train
    from tests.runs import checkpoints

    out, r = result
    case = next(c for c in cnn_dnn.tiny().cases if c.name == "k4-overlap")
    run_dir = out / "cases" / case.name
    before = {ph: checkpoints(run_dir, ph) for ph in ("snets", "gnet_r")}
    before.update({ph: checkpoints(run_dir / "cnn_dnn", ph) for ph in ("dnn", "coherent", "transfer")})
    # the transfer phase's initial state is saved whether or not its score is cached: remove the
    # checkpoint and keep transfer_init.json, and the re-run writes the same checkpoint again
    saved = load_variables(run_dir / "cnn_dnn", "transfer_init")
    assert (run_dir / "cnn_dnn" / "transfer_init.json").exists()
    shutil.rmtree(run_dir / "cnn_dnn" / "ckpt" / "transfer_init")
    again = train.run_cnn_dnn(case.config, case.cnn_dnn, run_dir, progress=False, log=lambda *a, **k: None)
    assert again["acc"] == r["cases"][case.name]["summary"]["acc"]
    after = {ph: checkpoints(run_dir, ph) for ph in ("snets", "gnet_r")}
    after.update({ph: checkpoints(run_dir / "cnn_dnn", ph) for ph in ("dnn", "coherent", "transfer")})
    assert after == before and all(before.values())
    resaved = load_variables(run_dir / "cnn_dnn", "transfer_init")
    assert jax.tree.structure(resaved) == jax.tree.structure(saved)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resaved), jax.tree.leaves(saved)))


def test_restart_without_a_transfer_phase_forgets_the_cached_transfer_score(result, monkeypatch):
    """``--restart`` with a configuration that has no transfer phase still forgets
    ``transfer_init.json``: a later run with a transfer phase must not read the old score.  (Last in
    this file: it restarts the case's CNN-DNN phases.)"""
    from dcnn_dd.cnn_dnn import train

    out, _ = result
    case = next(c for c in cnn_dnn.tiny().cases if c.name == "k4-overlap")
    run_dir = out / "cases" / case.name
    cached = run_dir / "cnn_dnn" / "transfer_init.json"
    assert cached.exists()
    from dcnn_dd.train import Algorithm1Result

    a1 = json.loads((run_dir / "summary.json").read_text())

    def finished(config, run_dir, **kw):  # the trained local CNNs, not retrained
        return Algorithm1Result(a1, kw["setup"], None, None, load_variables(run_dir, "snets"), {})

    monkeypatch.setattr(train, "run_algorithm1", finished)
    cfg = dataclasses.replace(case.cnn_dnn, dnn_epochs=0, coherent_epochs=0, transfer_epochs=0)
    summary = train.run_cnn_dnn(case.config, cfg, run_dir, restart=True, progress=False, log=lambda *a, **k: None)
    assert not cached.exists() and summary["acc"]["transfer_init"] is None
