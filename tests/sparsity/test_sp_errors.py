"""Bad input to the public sparsity functions: one clear error naming the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.sparsity import (
    SAP,
    LotteryTicket,
    apply_mask,
    fraction_step,
    gini_index,
    keep_pruned,
    l1,
    l1_prox,
    magnitude_mask,
    pq_index,
    pqi_retained_bound,
    prune_step,
    sap_step,
)

PARAMS = {"Conv_0": {"kernel": np.random.default_rng(0).standard_normal((3, 3, 2, 4))
                     .astype(np.float32), "bias": np.ones(4, np.float32)},
          "Dense_0": {"kernel": np.random.default_rng(1).standard_normal((36, 5))
                      .astype(np.float32)}}
ONES = jax.tree.map(lambda x: np.ones(x.shape, bool), PARAMS)


def replace(tree: dict, layer: str, leaf: str, value: object) -> dict:
    out = jax.tree.map(np.copy, tree)
    out[layer][leaf] = value
    return out


NAN = replace(PARAMS, "Dense_0", "kernel", np.where(np.arange(180).reshape(36, 5) == 16,
                                                    np.nan, PARAMS["Dense_0"]["kernel"]))
NAN_PRUNED = replace(ONES, "Dense_0", "kernel", np.arange(180).reshape(36, 5) != 16)
SHORT = {"Conv_0": ONES["Conv_0"]}
WRONG_SHAPE = replace(ONES, "Dense_0", "kernel", np.ones((5, 36), bool))
FLOATS = jax.tree.map(lambda m: m * 0.5, ONES)
INTS = jax.tree.map(lambda x: np.ones(x.shape, np.int32), PARAMS)
TREE_NAN = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([-jnp.inf, 0.0, 1.0])}
LEAF = r"params contains NaN or Inf \(leaf 'Dense_0/kernel'\)"
FIX = r"mask.astype\(bool\) or jax.tree.map\(lambda m: m > 0.5, mask\)"


def explicit(tree: dict) -> dict:
    mesh = jax.make_mesh((1,), ("x",))   # Explicit axes by default
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P())), tree)


def update(tx, updates, params=None):
    return tx.update(updates, tx.init(PARAMS), params)


CASES = {
    # magnitude_mask and apply_mask
    "sparsity=1": (lambda: magnitude_mask(PARAMS, 1.0), ValueError, "sparsity"),
    "sparsity<0": (lambda: magnitude_mask(PARAMS, -0.1), ValueError, "sparsity"),
    "sparsity nan": (lambda: magnitude_mask(PARAMS, float("nan")), ValueError, "sparsity"),
    "sparsity str": (lambda: magnitude_mask(PARAMS, "0.5"), TypeError, "sparsity"),
    "scope": (lambda: magnitude_mask(PARAMS, 0.5, scope="channel"), ValueError, "scope"),
    "mask structure": (lambda: magnitude_mask(PARAMS, 0.5, mask=SHORT), ValueError, "mask"),
    "mask shape": (lambda: magnitude_mask(PARAMS, 0.5, mask=WRONG_SHAPE), ValueError, "mask"),
    "mask float": (lambda: magnitude_mask(PARAMS, 0.5, mask=FLOATS), TypeError, FIX),
    "params nan": (lambda: magnitude_mask(NAN, 0.5), ValueError, LEAF),
    "params nan pruned": (lambda: magnitude_mask(NAN, 0.5, scope="neuron", mask=NAN_PRUNED),
                          ValueError, LEAF),
    "params int": (lambda: magnitude_mask(INTS, 0.5), TypeError, "params"),
    "no prunable": (lambda: magnitude_mask({"bias": np.ones(3, np.float32)}, 0.5), ValueError,
                    "prunable"),
    "explicit mesh": (lambda: magnitude_mask(explicit(PARAMS), 0.5), ValueError,
                      "Explicit axes"),
    "apply shape": (lambda: apply_mask(PARAMS, WRONG_SHAPE), ValueError, "mask"),
    "apply float": (lambda: apply_mask(PARAMS, FLOATS), TypeError, FIX),
    # optax transforms
    "keep_pruned float": (lambda: keep_pruned(FLOATS), TypeError, FIX),
    "keep_pruned structure": (lambda: update(keep_pruned(SHORT), PARAMS, PARAMS), ValueError,
                              "mask"),
    "keep_pruned callable": (lambda: update(keep_pruned(lambda p: ONES), PARAMS), ValueError,
                             "params"),
    "l1 strength": (lambda: l1(-1.0), ValueError, "strength"),
    "l1 strength str": (lambda: l1("big"), TypeError, "strength"),
    "l1 params": (lambda: update(l1(0.1), PARAMS), ValueError, "params"),
    "l1_prox threshold": (lambda: l1_prox(-0.1), ValueError, "threshold"),
    # measures
    "p=0": (lambda: pq_index(jnp.ones(3), 0.0, 1.0), ValueError, "p"),
    "p>1": (lambda: pq_index(jnp.ones(3), 1.5, 2.0), ValueError, "p"),
    "q<1": (lambda: pqi_retained_bound(jnp.ones(3), 0.5, 0.9), ValueError, "q"),
    "p=q": (lambda: pqi_retained_bound(jnp.ones(3), 1.0, 1.0), ValueError, "p < q"),
    "q inf": (lambda: pq_index(jnp.ones(3), 0.5, float("inf")), ValueError, "q"),
    "p str": (lambda: pq_index(jnp.ones(3), "0.5"), TypeError, "p"),
    "eta": (lambda: pqi_retained_bound(jnp.ones(3), eta=-0.1), ValueError, "eta"),
    "pq zero": (lambda: pq_index(jnp.zeros(3)), ValueError, "x is the zero vector"),
    "gini zero": (lambda: gini_index(jnp.zeros(3)), ValueError, "x is the zero vector"),
    "bound zero": (lambda: pqi_retained_bound(jnp.zeros(3)), ValueError, "zero vector"),
    "pq nan": (lambda: pq_index(jnp.array([1.0, jnp.nan])), ValueError, "x contains NaN"),
    "pq inf leaf": (lambda: pq_index(TREE_NAN), ValueError, r"NaN or Inf \(leaf 'b'\)"),
    "gini inf leaf": (lambda: gini_index(TREE_NAN), ValueError, r"NaN or Inf \(leaf 'b'\)"),
    "bound inf leaf": (lambda: pqi_retained_bound(TREE_NAN), ValueError, r"\(leaf 'b'\)"),
    "pq ints": (lambda: pq_index(jnp.arange(4)), TypeError, "x"),
    "gini empty": (lambda: gini_index({}), ValueError, "x"),
    "pq mask structure": (lambda: pq_index(PARAMS, mask=SHORT), ValueError, "mask"),
    "pq mask float": (lambda: pq_index(PARAMS, mask=FLOATS), TypeError, FIX),
    "pq explicit mesh": (lambda: pq_index(explicit(PARAMS)), ValueError, "Explicit axes"),
    # pruning steps and policies
    "sap q": (lambda: sap_step(PARAMS, ONES, p=0.5, q=0.8), ValueError, "q"),
    "SAP p": (lambda: SAP(p=2.0, q=3.0), ValueError, "p"),
    "sap beta": (lambda: sap_step(PARAMS, ONES, beta=1.5), ValueError, "beta"),
    "SAP gamma": (lambda: SAP(gamma=0.0), ValueError, "gamma"),
    "sap eta": (lambda: sap_step(PARAMS, ONES, eta=-1.0), ValueError, "eta"),
    "LT fraction": (lambda: LotteryTicket(fraction=1.0), ValueError, "fraction"),
    "fraction<0": (lambda: fraction_step(PARAMS, ONES, fraction=-0.2), ValueError, "fraction"),
    "step mask": (lambda: sap_step(PARAMS, SHORT), ValueError, "mask"),
    "step mask float": (lambda: fraction_step(PARAMS, FLOATS), TypeError, FIX),
    "step scope": (lambda: prune_step(SAP(), PARAMS, ONES, scope="row"), ValueError, "scope"),
    "policy": (lambda: prune_step("sap", PARAMS, ONES), TypeError, "policy"),
    "step nan": (lambda: sap_step(NAN, ONES), ValueError, LEAF),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_a_clear_error(case: str) -> None:
    call, error, match = CASES[case]
    with pytest.raises(error, match=match):
        call()
