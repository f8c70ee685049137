"""Magnitude masks, apply_mask and sparsity reports (SPEC 2.3, 3.2) against a sorting oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sp_oracles import gather, remove_smallest_np, scatter, units_np

from prune_jax.sparsity import apply_mask, magnitude_mask, sparsity_report
from prune_jax.sparsity._select import Refinement, kept_after_removal, refine_cut

SCOPES = ["global", "layer", "neuron"]


def make_params(seed: int, ties: bool = False) -> dict:
    """A small Flax-like tree: two kernels (one conv), biases, a norm scale."""
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if ties:  # few distinct magnitudes, both signs, and exact zeros
            return (rng.integers(-3, 4, shape) * 0.5).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "Conv_0": {"kernel": draw((3, 3, 2, 4)), "bias": draw((4,))},
        "BatchNorm_0": {"scale": draw((4,))},
        "Dense_0": {"kernel": draw((36, 5)), "bias": draw((5,))},
    }


def kernels(tree: dict) -> list[np.ndarray]:
    """The prunable leaves in jax.tree.leaves order (Conv_0 before Dense_0)."""
    return [np.asarray(tree["Conv_0"]["kernel"]), np.asarray(tree["Dense_0"]["kernel"])]


def oracle_mask(params: dict, sparsity: float, scope: str, mask: dict | None = None
                ) -> list[np.ndarray]:
    leaves = kernels(params)
    live = [np.ones(x.shape, bool) for x in leaves] if mask is None else kernels(mask)
    out = [np.ones(x.shape, bool) for x in leaves]
    for unit in units_np(leaves, scope):
        values, alive = gather(leaves, unit), gather(live, unit)
        k = max(int(np.floor(sparsity * values.size + 1e-9)), int((~alive).sum()))
        scatter(out, unit, ~remove_smallest_np(values, alive, k))
    return out


def random_mask(params: dict, seed: int, density: float = 0.7) -> dict:
    rng = np.random.default_rng(seed)
    mask = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    for layer in ("Conv_0", "Dense_0"):
        shape = params[layer]["kernel"].shape
        mask[layer]["kernel"] = rng.uniform(size=shape) < density
    return mask


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_sorting_oracle(scope: str, ties: bool, with_mask: bool) -> None:
    params = make_params(0, ties)
    mask = random_mask(params, 1) if with_mask else None
    for sparsity in (0.0, 0.1, 0.37, 0.5, 0.9, 0.999):
        got = magnitude_mask(params, sparsity, scope=scope, mask=mask)
        for g, want in zip(kernels(got), oracle_mask(params, sparsity, scope, mask), strict=True):
            np.testing.assert_array_equal(g, want)
        for name in ("bias",):
            assert np.all(got["Conv_0"][name]) and np.all(got["Dense_0"][name])
        assert np.all(got["BatchNorm_0"]["scale"])


@pytest.mark.parametrize("scope", SCOPES)
def test_exact_count_per_unit(scope: str) -> None:
    params = make_params(2)
    leaves = kernels(params)
    for sparsity in (0.05, 0.29, 0.5, 0.77):
        got = kernels(magnitude_mask(params, sparsity, scope=scope))
        for unit in units_np(leaves, scope):
            kept = gather(got, unit)
            # floor(sparsity * m) removed; 0.29 * 36 etc. must not lose one to rounding
            assert (~kept).sum() == int(np.floor(round(sparsity * kept.size, 9)))


def test_ties_removed_in_flat_order_across_leaves() -> None:
    params = {"a": {"kernel": np.ones((2, 3), np.float32)},
              "b": {"kernel": np.ones((3, 2), np.float32)}}
    got = magnitude_mask(params, 0.5, scope="global")
    np.testing.assert_array_equal(got["a"]["kernel"], np.zeros((2, 3), bool))
    np.testing.assert_array_equal(got["b"]["kernel"], np.ones((3, 2), bool))
    got = magnitude_mask(params, 0.34, scope="neuron")  # floor(0.34 * 2) = 0 per neuron
    assert np.all(got["a"]["kernel"])
    got = magnitude_mask(params, 0.5, scope="neuron")  # neuron j of "b": rows 0..2, drop row 0
    np.testing.assert_array_equal(got["b"]["kernel"], [[False, False], [True, True],
                                                         [True, True]])


def test_zero_and_negative_zero_rank_below_positive() -> None:
    w = np.array([[0.5, -0.0], [0.0, -1e-30], [2.0, 1e-37]], np.float32)
    got = magnitude_mask({"k": {"kernel": w}}, 0.5)["k"]["kernel"]
    np.testing.assert_array_equal(got, [[True, False], [False, True], [True, False]])


def test_existing_mask_stays_pruned_even_when_sparsity_is_lower() -> None:
    params = make_params(3)
    mask = random_mask(params, 4, density=0.3)
    got = magnitude_mask(params, 0.2, scope="layer", mask=mask)
    for g, m in zip(kernels(got), kernels(mask), strict=True):
        np.testing.assert_array_equal(g, m)  # more than 20% already pruned: nothing else goes
    got = magnitude_mask(params, 0.9, scope="layer", mask=mask)
    for g, m in zip(kernels(got), kernels(mask), strict=True):
        assert not np.any(g & ~m)


def test_custom_prunable_and_deterministic() -> None:
    params = make_params(5)
    only_dense = lambda name, leaf: name == "Dense_0/kernel"
    got = magnitude_mask(params, 0.5, prunable=only_dense)
    assert np.all(got["Conv_0"]["kernel"])
    assert (~got["Dense_0"]["kernel"]).sum() == 90
    again = magnitude_mask(params, 0.5, prunable=only_dense)
    np.testing.assert_array_equal(got["Dense_0"]["kernel"], again["Dense_0"]["kernel"])
    flags = jax.tree.map(lambda _: False, params)
    flags["Conv_0"]["bias"] = True
    got = magnitude_mask(params, 0.5, prunable=flags)
    assert (~got["Conv_0"]["bias"]).sum() == 2 and np.all(got["Dense_0"]["kernel"])


def test_under_jit_with_traced_params_and_mask() -> None:
    params = make_params(6)
    mask = random_mask(params, 7)
    eager = magnitude_mask(params, 0.6, scope="neuron", mask=mask)
    jitted = jax.jit(lambda p, m: magnitude_mask(p, 0.6, scope="neuron", mask=m))(params, mask)
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)


def test_bfloat16_params() -> None:
    bf = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), make_params(6))
    want = oracle_mask(jax.tree.map(lambda x: np.asarray(x, np.float32), bf), 0.6, "layer")
    for g, w in zip(kernels(magnitude_mask(bf, 0.6, scope="layer")), want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_float64_keys_resolve_differences_below_float32() -> None:
    with jax.enable_x64(True):
        w = np.array([[1.0 + 1e-12, 1.0], [1.0 + 3e-12, 1.0 + 2e-12]])
        got = magnitude_mask({"d": {"kernel": jnp.asarray(w)}}, 0.5)["d"]["kernel"]
    np.testing.assert_array_equal(got, [[False, False], [True, True]])


def test_many_ties_straddling_in_a_larger_global_unit() -> None:
    rng = np.random.default_rng(7)
    params = {f"L{i}": {"kernel": (rng.integers(0, 5, (64, 33)) / 4).astype(np.float32)}
              for i in range(3)}
    leaves = [params[f"L{i}"]["kernel"] for i in range(3)]
    for sparsity in (0.3, 0.61):
        got = magnitude_mask(params, sparsity)
        flat = np.concatenate([x.ravel() for x in leaves])
        want = ~remove_smallest_np(flat, np.ones(flat.size, bool),
                                   int(np.floor(sparsity * flat.size + 1e-9)))
        np.testing.assert_array_equal(
            np.concatenate([got[f"L{i}"]["kernel"].ravel() for i in range(3)]), want)


def test_apply_mask_and_report() -> None:
    params = make_params(8)
    params["Dense_0"]["kernel"][0, :] = 0.0  # zeros in params must not count as pruned
    mask = magnitude_mask(params, 0.25, scope="layer")
    masked = apply_mask(params, mask)
    for w, m in zip(jax.tree.leaves(masked), jax.tree.leaves(mask), strict=True):
        assert w.dtype == jnp.float32
        assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)
    np.testing.assert_array_equal(masked["Conv_0"]["kernel"][mask["Conv_0"]["kernel"]],
                                  params["Conv_0"]["kernel"][mask["Conv_0"]["kernel"]])
    report = sparsity_report(mask)
    assert report.leaves["Conv_0/kernel"] == (72, 54, 0.25, 0.75)
    assert report.leaves["Dense_0/kernel"] == (180, 135, 0.25, 0.75)
    assert report.leaves["Dense_0/bias"].sparsity == 0.0
    assert report.prunable.total == 252 and report.prunable.kept == 189
    assert report.overall.total == 252 + 13 and report.overall.kept == 189 + 13
    np.testing.assert_allclose(report.overall.density + report.overall.sparsity, 1.0)
    jitted = jax.jit(apply_mask)(params, mask)
    jax.tree.map(np.testing.assert_array_equal, masked, jitted)


def test_errors_name_the_argument() -> None:
    params = make_params(9)
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            magnitude_mask(params, bad)
    with pytest.raises(TypeError, match="sparsity"):
        magnitude_mask(params, "0.5")
    with pytest.raises(ValueError, match="scope"):
        magnitude_mask(params, 0.5, scope="channel")
    short = {"Conv_0": params["Conv_0"]}
    with pytest.raises(ValueError, match="mask"):
        magnitude_mask(params, 0.5, mask=jax.tree.map(lambda x: np.ones(x.shape, bool), short))
    wrong_shape = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    wrong_shape["Dense_0"]["kernel"] = np.ones((5, 36), bool)
    with pytest.raises(ValueError, match="mask"):
        magnitude_mask(params, 0.5, mask=wrong_shape)
    with pytest.raises(ValueError, match="mask"):
        apply_mask(params, wrong_shape)
    with pytest.raises(TypeError, match="mask"):
        apply_mask(params, jax.tree.map(lambda x: np.ones(np.shape(x), np.float32), params))
    nan = jax.tree.map(np.copy, params)
    nan["Dense_0"]["kernel"][3, 1] = np.nan
    with pytest.raises(ValueError, match=r"params contains NaN or Inf \(leaf 'Dense_0/kernel'"):
        magnitude_mask(nan, 0.5)
    pruned = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    pruned["Dense_0"]["kernel"][3, 1] = False   # a pruned NaN is still bad input
    with pytest.raises(ValueError, match=r"params contains NaN or Inf \(leaf 'Dense_0/kernel'"):
        magnitude_mask(nan, 0.5, scope="neuron", mask=pruned)
    ints = jax.tree.map(lambda x: np.ones(np.shape(x), np.int32), params)
    with pytest.raises(TypeError, match="params"):
        magnitude_mask(ints, 0.5)
    with pytest.raises(ValueError, match="prunable"):
        magnitude_mask({"bias": np.ones(3, np.float32)}, 0.5)


# Bracket refinement (large units, prune_jax/sparsity/_select.py) against the bisection and the
# lexsort oracle. Small Refinement settings reach every branch (several passes, resampling,
# tie windows, equal key splits) on small inputs; the fixed shapes keep compilations few.

REFINE_SHAPES = [(37, 29), (300,), (5, 7, 11)]  # 1073 + 300 + 385 = 1758 weights
REFINE_CONFIGS = {
    "sampled": Refinement(fast_min=1, sample=64, cap=256),
    "key-splits": Refinement(fast_min=1, sample=64, cap=256, guided_passes=0),
}


def refine_leaves(kind: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in REFINE_SHAPES:
        n = int(np.prod(shape))
        if kind == "laplace":
            w = rng.laplace(0.0, 1.0, n)
        elif kind == "ties":  # 7 magnitudes of both signs, zeros included
            w = rng.integers(-3, 4, n) * 0.5
        elif kind == "zeros":  # 40% exact zeros (and -0.0)
            w = np.where(rng.uniform(size=n) < 0.4, rng.choice([0.0, -0.0], n),
                         rng.standard_normal(n))
        elif kind == "subnormal":  # ties among subnormals, which XLA:CPU flushes in float math
            w = rng.choice([1e-45, 3e-45, 1e-40, 1.0, 2.0], n) * rng.choice([-1, 1], n)
        elif kind == "sorted":
            w = np.sort(rng.standard_normal(n))
        else:  # "periodic": a short period, so that the strided sample is unrepresentative
            w = np.tile(rng.standard_normal(9), n // 9 + 1)[:n]
        out.append(w.astype(np.float32).reshape(shape))
    return out


def refine_counts(scope: str, k: int) -> list[int]:
    """Per-leaf ``at_least``: k under "global", ``k * m // 1758`` per leaf under "layer"."""
    sizes = [int(np.prod(s)) for s in REFINE_SHAPES]
    return [k] * 3 if scope == "global" else [k * m // sum(sizes) for m in sizes]


def refine_oracle(leaves: list[np.ndarray], live: list[np.ndarray] | None,
                  at_least: list[int], scope: str) -> list[np.ndarray]:
    live = [np.ones(x.shape, bool) for x in leaves] if live is None else live
    out = [np.ones(x.shape, bool) for x in leaves]
    for i, unit in enumerate(units_np(leaves, scope)):
        values, alive = gather(leaves, unit), gather(live, unit)
        k = max(at_least[i], int((~alive).sum()))
        scatter(out, unit, ~remove_smallest_np(values, alive, k))
    return out


@pytest.mark.parametrize("config", list(REFINE_CONFIGS))
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_refinement_equals_bisection_and_oracle(config: str, scope: str,
                                                with_mask: bool) -> None:
    cfg = REFINE_CONFIGS[config]
    bisect = Refinement(fast_min=10**9)
    zeros = [jnp.zeros((1,), jnp.int32)] * 3
    for seed, kind in enumerate(["laplace", "ties", "zeros", "subnormal", "sorted",
                                 "periodic"]):
        leaves = refine_leaves(kind, seed)
        rng = np.random.default_rng(100 + seed)
        live = ([rng.uniform(size=x.shape) < rng.uniform(0.2, 0.9) for x in leaves]
                if with_mask else None)
        for k in (0, 1, 2, 500, 879, 1500, 1757, 1758):
            at_least = refine_counts(scope, k)
            args = ([jnp.asarray(x) for x in leaves],
                    None if live is None else [jnp.asarray(m) for m in live],
                    [jnp.asarray([c], jnp.int32) for c in at_least], zeros)
            got, ok_got = kept_after_removal(*args, scope=scope, config=cfg)
            ref, ok_ref = kept_after_removal(*args, scope=scope, config=bisect)
            assert bool(ok_got) and bool(ok_ref)
            want = refine_oracle(leaves, live, at_least, scope)
            for g, r, w in zip(got, ref, want, strict=True):
                np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"{kind} k={k}")
                np.testing.assert_array_equal(np.asarray(r), w, err_msg=f"{kind} k={k}")
    if with_mask:  # the finiteness flag (same compiled programs): NaN/Inf, pruned or not
        for bad, pruned in ((np.nan, False), (-np.inf, True), (np.nan, True)):
            w = [x.copy() for x in leaves]
            w[1][17] = bad
            m = [x.copy() for x in live]
            m[1][17] = not pruned
            args = ([jnp.asarray(x) for x in w], [jnp.asarray(x) for x in m],
                    [jnp.asarray([c], jnp.int32) for c in refine_counts(scope, 500)], zeros)
            for c in (cfg, bisect):
                assert not bool(kept_after_removal(*args, scope=scope, config=c)[1]), bad


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_refinement_leaf_parts(scope: str) -> None:
    """Leaves read in every combination of parts: a multiple of 32 rows of 32 entries, other
    full rows, and a partial last word (``_select._leaf_words``)."""
    shapes = [(37, 45), (66, 32), (40, 8), (35, 25), (2053,)]
    rng = np.random.default_rng(5)
    leaves = [rng.laplace(size=s).astype(np.float32) for s in shapes]
    live = [rng.uniform(size=s) < 0.7 for s in shapes]
    sizes = [int(np.prod(s)) for s in shapes]
    zeros = [jnp.zeros((1,), jnp.int32)] * len(shapes)
    for k in (1, 1000, 3000, sum(sizes) - 1):
        at_least = [k] * 5 if scope == "global" else [k * m // sum(sizes) for m in sizes]
        for mask in (None, live):
            args = ([jnp.asarray(x) for x in leaves],
                    None if mask is None else [jnp.asarray(m) for m in mask],
                    [jnp.asarray([c], jnp.int32) for c in at_least], zeros)
            got, ok = kept_after_removal(*args, scope=scope, config=REFINE_CONFIGS["sampled"])
            assert bool(ok)
            for g, w in zip(got, refine_oracle(leaves, mask, at_least, scope), strict=True):
                np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"k={k}")
    bad = [x.copy() for x in leaves]
    bad[0][36, 44] = np.inf  # in a short last chunk
    args = ([jnp.asarray(x) for x in bad], None,
            [jnp.asarray([c], jnp.int32) for c in [1000] * 5], zeros)
    assert not bool(kept_after_removal(*args, scope=scope, config=REFINE_CONFIGS["sampled"])[1])


def test_refinement_reaches_its_branches() -> None:
    """The small settings above do take several passes, resample and split key ranges."""
    flat = [jnp.asarray(x.ravel()) for x in refine_leaves("laplace", 0)]
    ties = [jnp.asarray(x.ravel()) for x in refine_leaves("ties", 1)]
    sampled, splits = REFINE_CONFIGS["sampled"], REFINE_CONFIGS["key-splits"]
    passes = [int(refine_cut(flat, None, jnp.int32(k), float_dtype=jnp.float32,
                             config=sampled)[2]) for k in (1, 879, 1757)]
    assert max(passes) >= 2
    assert int(refine_cut(flat, None, jnp.int32(879), float_dtype=jnp.float32,
                          config=splits)[2]) > max(passes)
    # a tie of 7 magnitudes over 1758 weights: captured as one key value (> cap entries)
    t, cut, _ = refine_cut(ties, None, jnp.int32(879), float_dtype=jnp.float32, config=sampled)
    flat_ties = np.concatenate([np.asarray(x) for x in ties])
    order = np.lexsort((np.arange(flat_ties.size), np.abs(flat_ties)))
    assert int(cut) == order[878]
    assert np.float32(np.abs(flat_ties[order[878]])).view(np.int32) == int(t)


def test_refinement_float64() -> None:
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        base = rng.integers(1, 4, 1500).astype(np.float64)
        w = [base[:900] + rng.integers(0, 3, 900) * 1e-13, base[900:] * (1 + 1e-15)]
        live = [rng.uniform(size=900) < 0.8, np.ones(600, bool)]
        for k in (1, 700, 1499):
            _, cut, _ = refine_cut([jnp.asarray(x) for x in w], [jnp.asarray(m) for m in live],
                                   jnp.asarray(k, jnp.int32), float_dtype=jnp.float64,
                                   config=Refinement(fast_min=1, sample=64, cap=256))
            flat = np.concatenate(w)
            key = np.where(np.concatenate(live), np.abs(flat), -1.0)
            assert int(cut) == np.lexsort((np.arange(flat.size), key))[k - 1]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_large_units_take_the_refinement(scope: str) -> None:
    """Above 2**17 weights the public function uses the refinement: same masks as the oracle,
    eagerly and under jit, with ties, zeros and a current mask."""
    rng = np.random.default_rng(11)
    w0 = (rng.integers(-40, 41, (320, 512)) / 8).astype(np.float32)   # 163840 weights, ties
    w1 = rng.laplace(0.0, 0.1, (3, 3, 64, 16)).astype(np.float32)       # 9216 weights
    params = {"Conv_0": {"kernel": w1}, "Dense_0": {"kernel": w0, "bias": np.zeros(512)}}
    mask = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    mask["Dense_0"]["kernel"] = rng.uniform(size=w0.shape) < 0.7
    for sparsity, m in ((0.37, None), (0.8, mask)):
        got = [magnitude_mask(params, sparsity, scope=scope, mask=m)]
        if m is not None and scope == "global":
            got.append(jax.jit(lambda p, mm: magnitude_mask(p, 0.8, mask=mm))(params, m))
        want = oracle_mask_for(params, sparsity, scope, m)
        for g in got:
            for name in ("Conv_0", "Dense_0"):
                np.testing.assert_array_equal(np.asarray(g[name]["kernel"]), want[name])
    # NaN/Inf is found by the refinement's first pass, even where pruned, and the leaf named
    bad = jax.tree.map(np.copy, params)
    bad["Dense_0"]["kernel"][100, 7] = np.inf
    mask["Dense_0"]["kernel"][100, 7] = False
    for sparsity, m in ((0.37, None), (0.8, mask)):
        with pytest.raises(ValueError, match=r"NaN or Inf \(leaf 'Dense_0/kernel'"):
            magnitude_mask(bad, sparsity, scope=scope, mask=m)


def oracle_mask_for(params: dict, sparsity: float, scope: str, mask: dict | None
                    ) -> dict[str, np.ndarray]:
    names = ["Conv_0", "Dense_0"]
    leaves = [np.asarray(params[n]["kernel"]) for n in names]
    live = ([np.ones(x.shape, bool) for x in leaves] if mask is None
            else [np.asarray(mask[n]["kernel"]) for n in names])
    out = [np.ones(x.shape, bool) for x in leaves]
    for unit in units_np(leaves, scope):
        values, alive = gather(leaves, unit), gather(live, unit)
        k = max(int(np.floor(sparsity * values.size + 1e-9)), int((~alive).sum()))
        scatter(out, unit, ~remove_smallest_np(values, alive, k))
    return dict(zip(names, out, strict=True))
