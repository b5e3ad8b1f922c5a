"""The python examples of the front page and the docs pages run as written (so the documentation
cannot drift from the code).  The CNN-DNN page's two examples run in tests/test_cnn_dnn.py;
tests/test_docs.py checks that every python block of every page is run by one of these tests."""

from tests.docs_pages import (
    engine_block, functional_api_block, layer_parallel_block, linen_engine_block, nnx_api_block, nnx_engine_block,
    run_stubbed,
)


def test_readme_example_runs(capsys, monkeypatch):
    """The front page's example; then docs/api.md's registration of its MyNet with the engine, in the
    same namespace, with `run_algorithm1` stubbed: a valid Config whose model is the front page's
    MyNet and whose sub-network has the front page's `subnet` shapes (so the plan above applies)."""
    import jax

    import dcnn_dd.train as train
    from dcnn_dd.models import registry
    from dcnn_dd.train import config as config_mod

    page, block = functional_api_block()
    namespace = {}
    exec(compile(block, page, "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "(2.13) first FC" in out and "(2.11) first layer" in out
    diff = float(out.strip().splitlines()[-1])
    assert diff < 1e-4

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    calls = []
    monkeypatch.setattr(train, "run_algorithm1", lambda *a, **k: calls.append((a, k)) or {}, raising=False)
    page, block = linen_engine_block()
    exec(compile(block, page, "exec"), namespace)  # noqa: S102
    ((config, run_dir), kw), = calls
    assert isinstance(config, train.Config) and run_dir == "results/my_linen_run" and not kw
    model = config_mod.build_model(config.model, 10)
    assert isinstance(model, namespace["MyNet"]) and (model.width, model.hidden) == (32, 64)
    x = jax.ShapeDtypeStruct((1, *namespace["grid"].sub_shape, 1), "float32")
    shapes = [jax.eval_shape(m.init, jax.random.PRNGKey(0), x) for m in (model.subnet(config.K), namespace["subnet"])]
    assert jax.tree.map(lambda a: a.shape, shapes[0]) == jax.tree.map(lambda a: a.shape, shapes[1])


def test_nnx_example_runs(capsys):
    """The functional API in Flax NNX (docs/api.md): the same plan as the Linen example, on NNX paths,
    and the composed nnx.State's logits are the sum of the K sub-networks' logits."""
    page, block = nnx_api_block()
    namespace = {}
    exec(compile(block, page, "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "fc/kernel" in out and "(2.13) first FC" in out and "(2.11) first layer" in out
    assert float(out.strip().splitlines()[-1]) < 1e-4
    assert namespace["plan"].verification.exact


def test_readme_engine_example_builds_a_valid_run(monkeypatch):
    """The training engine's example (docs/engine.md) with `run_algorithm1` stubbed: its Config must be valid and
    its model and grid must build (the real run is the quickstart, tested end to end)."""
    import dcnn_dd.train as train
    from dcnn_dd.train.config import build_grid, build_model

    (config, run_dir), = run_stubbed(monkeypatch, train, "run_algorithm1", engine_block())
    assert isinstance(config, train.Config) and run_dir == "results/my_run"
    model = build_model(config.model, 10)
    assert build_grid(config.grid, (28, 28, 1)).K == config.K and model.subnet(config.K).features == (8, 8, 16, 16)


def test_nnx_engine_example_builds_a_valid_run(monkeypatch):
    """Training an NNX model with the engine (docs/api.md) with `run_algorithm1` stubbed: the registered NNX
    class gives a valid Config, and its global network and sub-networks initialise and compose
    exactly (the real runs are tests/test_nnx_engine.py's)."""
    import jax

    import dcnn_dd as dd
    import dcnn_dd.train as train
    from dcnn_dd.models import registry as registry_mod
    from dcnn_dd.train.config import build_grid, build_model

    monkeypatch.setattr(registry_mod, "MODELS", dict(registry_mod.MODELS))
    (config, run_dir), = run_stubbed(monkeypatch, train, "run_algorithm1", nnx_engine_block())
    assert isinstance(config, train.Config) and run_dir == "results/my_nnx_run"
    model, grid = build_model(config.model, 10), build_grid(config.grid, (28, 28, 1))
    sub = model.subnet(config.K)
    v = sub.init(jax.random.PRNGKey(0), jax.numpy.zeros((1, *grid.sub_shape, 1)))
    assert v["params"]["conv"]["kernel"].shape == (3, 3, 1, 8) and set(v) == {"params", "batch_stats"}
    assert dd.plan_for(model, sub, grid, input_shape=(1, 28, 28, 1)).verification.exact


def test_readme_layer_parallel_example_runs(capsys):
    """The layer-parallel page's example (docs/layer_parallel.md): MGRIT gradients equal the serial
    ones, and 100 one-shot steps with 2 + 2 iterations each train the peaks problem."""
    page, block = layer_parallel_block()
    exec(compile(block, page, "exec"), {})  # noqa: S102
    diff, last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert float(diff) < 1e-5
    loss, fwd, bwd = last.split()
    assert (int(fwd), int(bwd)) == (2, 2) and float(loss) < 1.0  # log(5) = 1.61 at chance
