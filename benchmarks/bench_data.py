"""Is input handling a bottleneck? On-device pipeline vs one ResNet18 training step.

Measures, on the default JAX device and CIFAR shapes (32x32x3 uint8, synthetic data):

* pipeline: one jitted epoch of ``epoch_indices`` + gather ``x[idx]`` + ``preprocess`` with
  crop/flip augmentation, batch 128, inside ``lax.scan`` (the training loop's design; the
  batch is reduced to a scalar so XLA cannot drop the work);
* train step: one jitted ResNet18 (CIFAR-10 head) forward + backward + SGD-momentum update
  with BatchNorm in training mode, batch 128, on already preprocessed inputs.

Prints images/s for both and their ratio (pipeline / train step): a ratio far above 1 means
data loading is not the bottleneck. Run: ``python benchmarks/bench_data.py [--help]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prune_jax.data import dataset_info, epoch_indices, preprocess
from prune_jax.models import get_model, init_variables

CIFAR = dataset_info("cifar10")


def _time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``fn()`` (blocked until ready) after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pipeline_images_per_s(num_examples: int, batch_size: int, repeats: int) -> float:
    """Images/s of the jitted on-device epoch: shuffle, gather, augment, normalise."""
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (num_examples, *CIFAR.input_shape),
                                                      dtype=np.uint8))

    @jax.jit
    def epoch(x: jax.Array, key: jax.Array) -> jax.Array:
        key_perm, key_aug = jax.random.split(key)
        idx = epoch_indices(key_perm, num_examples, batch_size)
        keys = jax.random.split(key_aug, idx.shape[0])

        def step(total: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            rows, k = inp
            batch = preprocess(x[rows], CIFAR, key=k, train=True)
            return total + batch.sum(), None

        return jax.lax.scan(step, jnp.zeros(()), (idx, keys))[0]

    keys = iter(jax.random.split(jax.random.key(0), repeats + 1))
    seconds = _time(lambda: epoch(x, next(keys)), repeats)
    return (num_examples // batch_size) * batch_size / seconds


def train_images_per_s(batch_size: int, repeats: int) -> float:
    """Images/s of one jitted ResNet18 SGD-momentum step (forward + backward + update)."""
    model = get_model("resnet18", num_classes=CIFAR.num_classes)
    variables = init_variables(model, jax.random.key(0), CIFAR.input_shape)
    tx = optax.sgd(0.1, momentum=0.9)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    x = jax.random.normal(jax.random.key(1), (batch_size, *CIFAR.input_shape))
    y = jax.random.randint(jax.random.key(2), (batch_size,), 0, CIFAR.num_classes)

    def loss_fn(params: Any, stats: Any) -> tuple[jax.Array, Any]:
        logits, updates = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

    @jax.jit
    def step(params: Any, stats: Any, opt_state: Any) -> tuple[Any, Any, Any]:
        (_, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        deltas, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, deltas), updates["batch_stats"], opt_state

    seconds = _time(lambda: step(params, stats, opt_state), repeats)
    return batch_size / seconds


def main() -> None:
    """Parse arguments, run both measurements, print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-examples", type=int, default=10_240,
                        help="synthetic CIFAR images held on the device (default 10240)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    args = parser.parse_args()

    device = jax.devices()[0]
    pipe = pipeline_images_per_s(args.num_examples, args.batch_size, args.repeats)
    train = train_images_per_s(args.batch_size, args.repeats)
    print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}, "
          f"batch {args.batch_size}, CIFAR 32x32x3")
    print(f"{'stage':<44} {'images/s':>12} {'ms / batch':>11}")
    for label, rate in [("pipeline (indices+gather+crop/flip+normalise)", pipe),
                        ("ResNet18 train step (fwd+bwd+SGD momentum)", train)]:
        print(f"{label:<44} {rate:>12,.0f} {1e3 * args.batch_size / rate:>11.2f}")
    print(f"ratio pipeline / train step: {pipe / train:,.1f}x")


if __name__ == "__main__":
    main()
