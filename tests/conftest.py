"""Shared helpers for the property tests: random (trained-like) sub-network weights."""

import atexit
import os
import shutil
import tempfile
import zlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache per test session, shared with the subprocesses the tests
# start (tests/runs.py passes the environment on): the quickstart, resume and multi-process tests
# compile the same programs again and again, and XLA compilation dominates their time (the tiny
# quickstart: 14.8 s without the cache, 4.9 s with it).  A cached executable is the same compiled
# program, so the bitwise resume tests are unaffected.  An existing JAX_COMPILATION_CACHE_DIR is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="dcnn-dd-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import dcnn_dd as dd  # noqa: E402
from dcnn_dd.tree import path_str  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# ci (the default): deterministic draws, 12 examples per property test (the theorem tests share
# them out over K in {1, 2, 4, 9, 16}, tests/test_theorems.py).  thorough: random draws, 200 examples
# per test (per K for the theorem tests: 40), e.g. `HYPOTHESIS_PROFILE=thorough pytest tests/test_theorems.py`.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True, suppress_health_check=_QUIET)
settings.register_profile("thorough", max_examples=200, deadline=None, derandomize=False, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def random_sub_vars(model, x_sub, K, seed=0, noise=0.3):  # noqa: N803
    """K independent sub-network variable trees, initialised and then perturbed in every leaf
    (so biases and BatchNorm statistics are not their initial zeros/ones)."""
    out = []
    for k in range(K):
        key = jax.random.PRNGKey(1000 * seed + k)
        v = model.init(key, x_sub)

        def perturb(path, leaf, key=key):
            name = path_str(path)
            kk = jax.random.fold_in(key, zlib.crc32(name.encode()) % (2**31))
            z = jax.random.normal(kk, leaf.shape, leaf.dtype)
            if name.endswith("/var"):
                return 0.5 + jnp.abs(z)
            return leaf + noise * z

        out.append(jax.tree_util.tree_map_with_path(perturb, v))
    return out


def stacked(sub_vars):
    return dd.stack(sub_vars)
