"""Training loop: learning, masks respected, orbax kill-and-resume equals an uninterrupted run."""

import shutil

import chex
import jax
import jax.numpy as jnp
import pytest

from prune_jax import data as D
from prune_jax import models as M
from prune_jax.experiments.train import OptimizerConfig, evaluate, preprocess_batches, train
from prune_jax.sparsity import apply_mask, magnitude_mask
from prune_jax.tree import prunable_tree


@pytest.fixture(scope="module")
def digits():
    tr, info = D.load("digits", "train")
    te, _ = D.load("digits", "test")
    return tr, te, info


def _setup(info):
    model = M.get_model("mlp_small", num_classes=info.num_classes)
    return model, M.init_variables(model, jax.random.key(0), info.input_shape)


def test_train_learns_and_evaluates(digits):
    tr, te, info = digits
    model, variables = _setup(info)
    res = train(model, variables, tr, info, OptimizerConfig(), epochs=5, batch_size=64,
                key=jax.random.key(1), progress=False)
    assert len(res.history["train_loss"]) == 5
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]
    ev = evaluate(model, res.state.params, res.state.batch_stats,
                  preprocess_batches(D.padded_batches(te, 128), info))
    assert float(ev.accuracy) > 0.9


def test_resume_equals_uninterrupted(digits, tmp_path):
    tr, _, info = digits
    model, variables = _setup(info)
    cfg = OptimizerConfig(l1=1e-4)
    flags = prunable_tree(variables["params"])
    kw = dict(batch_size=64, key=jax.random.key(2), prunable=flags, progress=False)
    full = train(model, variables, tr, info, cfg, epochs=4, **kw)
    # A run killed after epoch 3 has checkpoints at epoch 2 only (checkpoint_every=2):
    # emulate it by deleting the final checkpoint of a complete run, then resume.
    ck = tmp_path / "ck"
    train(model, variables, tr, info, cfg, epochs=4, checkpoint_dir=ck, checkpoint_every=2,
          **kw)
    shutil.rmtree(ck / "4")
    assert sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) == [2]
    resumed = train(model, variables, tr, info, cfg, epochs=4, checkpoint_dir=ck,
                    checkpoint_every=2, **kw)
    chex.assert_trees_all_equal(resumed.state, full.state)
    assert resumed.history == full.history


def test_mask_keeps_pruned_weights_exactly_zero(digits):
    tr, _, info = digits
    model, variables = _setup(info)
    mask = magnitude_mask(variables["params"], 0.7)
    params0 = apply_mask(variables["params"], mask)
    res = train(model, {"params": params0}, tr, info,
                OptimizerConfig(weight_decay=1e-3, l1=1e-4), epochs=2, batch_size=64,
                key=jax.random.key(3), mask=mask, progress=False)
    for w, m in zip(jax.tree.leaves(res.state.params), jax.tree.leaves(mask), strict=True):
        assert jnp.all(jnp.where(m, True, w == 0.0))


def test_bad_batch_size(digits):
    tr, _, info = digits
    model, variables = _setup(info)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, variables, tr, info, OptimizerConfig(), epochs=1, batch_size=0,
              key=jax.random.key(0), progress=False)
