"""Twin models of the curvature benchmarks (torch/Flax) and their data; timing is in _harness.

Twin models compute the same function in both frameworks from the same weights:

* ``mlp``: ReLU MLP ``in - hidden... - classes`` (Flax ``Dense`` / torch ``Linear``).
* ``cnn``: ``[Conv3x3 (no bias) - BatchNorm - ReLU (- MaxPool2)] * n``, global average pool,
  ``Dense`` head; BatchNorm in inference mode (running statistics) in both frameworks.

The weights are initialised in Flax, perturbed (non-zero biases, non-trivial BatchNorm
statistics) and copied into torch; :class:`Twin` converts parameter-shaped pytrees to torch's
``model.parameters()`` order and back, so that tangents and products can be compared. Images
are NHWC in JAX and NCHW in torch (the same pixels). The loss is the mean softmax
cross-entropy in both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

PyTree = Any


# --------------------------------------------------------------------------- data

def synthetic_data(num: int, shape: Sequence[int], num_classes: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` float32 inputs ~ N(0, 1) of ``shape`` and uniform int64 labels (NHWC images)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num, *shape), dtype=np.float32)
    y = rng.integers(0, num_classes, num).astype(np.int64)
    return x, y


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW (a contiguous copy) for torch; vectors are returned unchanged."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


# --------------------------------------------------------------------------- Flax models

class FlaxMLP(nn.Module):
    """ReLU (or tanh) MLP; layers ``Dense_0 .. Dense_n`` (last one the classifier)."""

    features: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of flattened ``x``."""
        x = x.reshape(x.shape[0], -1)
        act = nn.relu if self.activation == "relu" else jnp.tanh
        for f in self.features[:-1]:
            x = act(nn.Dense(f)(x))
        return nn.Dense(self.features[-1])(x)


class FlaxCNN(nn.Module):
    """Conv3x3-BN-ReLU stages (max-pool after the first ``num_pools``), GAP, Dense head.

    BatchNorm always uses its running statistics (inference mode).
    """

    channels: Sequence[int]
    num_classes: int
    num_pools: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of NHWC images ``x``."""
        for i, c in enumerate(self.channels):
            x = nn.Conv(c, (3, 3), padding="SAME", use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=True, epsilon=1e-5)(x)
            x = nn.relu(x)
            if i < self.num_pools:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


# --------------------------------------------------------------------------- torch models

def torch_mlp(sizes: Sequence[int], activation: str = "relu") -> torch.nn.Module:
    """``nn.Sequential`` twin of :class:`FlaxMLP` (``sizes`` includes the input width)."""
    layers: list[torch.nn.Module] = [torch.nn.Flatten()]
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


class TorchCNN(torch.nn.Module):
    """Twin of :class:`FlaxCNN` on NCHW images (BatchNorm in eval mode via ``.eval()``)."""

    def __init__(self, in_channels: int, channels: Sequence[int], num_classes: int,
                 num_pools: int) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(channels):
            layers += [torch.nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                       torch.nn.BatchNorm2d(c, eps=1e-5), torch.nn.ReLU()]
            if i < num_pools:
                layers.append(torch.nn.MaxPool2d(2))
            c_in = c
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of NCHW images."""
        return self.head(self.features(x).mean(dim=(2, 3)))


# --------------------------------------------------------------------------- twins

@dataclasses.dataclass
class Twin:
    """The same model in Flax and torch, with converters between their parameter layouts.

    Attributes:
        name: short description.
        flax_model: the Flax module (``apply`` takes ``{"params": ..., **extra}``).
        params: Flax parameters (the differentiated pytree).
        extra: non-differentiated Flax collections (e.g. ``{"batch_stats": ...}``).
        torch_model: the torch module in eval mode, holding the same weights.
        layers: ``(flax layer name, kind)`` in torch parameter order; kind in
            ``dense``/``conv``/``bn``.
        input_shape: one example's shape in the JAX layout (NHWC for images).
        num_classes: number of classes.
    """

    name: str
    flax_model: nn.Module
    params: PyTree
    extra: dict[str, PyTree]
    torch_model: torch.nn.Module
    layers: list[tuple[str, str]]
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def num_params(self) -> int:
        """Number of differentiated parameters ``D``."""
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))

    def to_torch(self, tree: PyTree) -> list[torch.Tensor]:
        """A parameter-shaped Flax pytree as torch tensors in ``model.parameters()`` order."""
        out: list[np.ndarray] = []
        for name, kind in self.layers:
            layer = jax.tree.map(np.asarray, tree[name])
            if kind == "dense":
                out += [layer["kernel"].T, layer["bias"]]
            elif kind == "conv":
                out.append(layer["kernel"].transpose(3, 2, 0, 1))
            else:
                out += [layer["scale"], layer["bias"]]
        return [torch.from_numpy(np.array(a, dtype=np.float32, order="C")) for a in out]

    def from_torch(self, tensors: Sequence[torch.Tensor]) -> PyTree:
        """Inverse of :meth:`to_torch` (numpy leaves)."""
        it = iter(t.detach().numpy() for t in tensors)
        tree: dict[str, dict[str, np.ndarray]] = {}
        for name, kind in self.layers:
            if kind == "dense":
                tree[name] = {"kernel": next(it).T, "bias": next(it)}
            elif kind == "conv":
                tree[name] = {"kernel": next(it).transpose(2, 3, 1, 0)}
            else:
                tree[name] = {"scale": next(it), "bias": next(it)}
        return tree

    def jax_loss(self) -> Callable[[PyTree, tuple[jax.Array, jax.Array]], jax.Array]:
        """``loss(params, (x, y))``: mean softmax cross-entropy (inference mode).

        The non-differentiated collections are closed over (small constants); the parameters
        and the batch are arguments.
        """
        model, extra = self.flax_model, self.extra

        def loss(params: PyTree, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
            x, y = batch
            logits = model.apply({"params": params, **extra}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        return loss

    def torch_params(self) -> list[torch.Tensor]:
        """The torch parameters (``requires_grad``), in order."""
        return [p for p in self.torch_model.parameters() if p.requires_grad]

    def torch_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A numpy batch (JAX layout) as torch tensors (NCHW for images)."""
        return torch.from_numpy(to_nchw(x)), torch.from_numpy(y)


def _perturb(tree: PyTree, rng: np.random.Generator, names: Sequence[str], scale: float,
             offset: float = 0.0) -> PyTree:
    """Add ``offset + scale * N(0, 1)`` to leaves whose name is in ``names``."""
    def f(path: tuple[Any, ...], x: Any) -> Any:
        key = getattr(path[-1], "key", None)
        if key in names:
            return jnp.asarray(np.asarray(x) + offset
                               + scale * rng.standard_normal(x.shape).astype(np.float32))
        return x
    return jax.tree_util.tree_map_with_path(f, tree)


def _copy_into(model: torch.nn.Module, tensors: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        params = [p for p in model.parameters() if p.requires_grad]
        if len(params) != len(tensors):
            raise ValueError(f"twin mismatch: {len(params)} torch params, {len(tensors)} given")
        for p, t in zip(params, tensors, strict=True):
            if p.shape != t.shape:
                raise ValueError(f"twin mismatch: torch {tuple(p.shape)} vs {tuple(t.shape)}")
            p.copy_(t)


def make_mlp(sizes: Sequence[int], seed: int = 0, activation: str = "relu") -> Twin:
    """MLP twin; ``sizes = (input, hidden..., classes)``, e.g. ``(784, 512, 256, 10)``."""
    model = FlaxMLP(tuple(sizes[1:]), activation)
    params = model.init(jax.random.key(seed), jnp.zeros((1, sizes[0])))["params"]
    params = _perturb(params, np.random.default_rng(seed), ["bias"], 0.05)
    tm = torch_mlp(sizes, activation).eval()
    twin = Twin(f"MLP {'-'.join(map(str, sizes))} {activation}", model, params, {}, tm,
                [(f"Dense_{i}", "dense") for i in range(len(sizes) - 1)], (sizes[0],),
                sizes[-1])
    _copy_into(tm, twin.to_torch(params))
    return twin


def make_cnn(channels: Sequence[int] = (32, 64, 128), num_pools: int = 2,
             input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10,
             seed: int = 0) -> Twin:
    """CNN twin with BatchNorm (inference mode); random but non-trivial BN statistics."""
    model = FlaxCNN(tuple(channels), num_classes, num_pools)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, *input_shape)))
    rng = np.random.default_rng(seed)
    params = _perturb(variables["params"], rng, ["bias", "scale"], 0.1)
    stats = _perturb(variables["batch_stats"], rng, ["mean"], 0.1)
    stats = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape).astype(np.float32))
        if getattr(p[-1], "key", None) == "var" else x, stats)
    layers: list[tuple[str, str]] = []
    for i in range(len(channels)):
        layers += [(f"Conv_{i}", "conv"), (f"BatchNorm_{i}", "bn")]
    layers.append(("Dense_0", "dense"))
    tm = TorchCNN(input_shape[-1], channels, num_classes, num_pools).eval()
    twin = Twin(f"CNN {'-'.join(map(str, channels))} +BN", model, params,
                {"batch_stats": stats}, tm, layers, tuple(input_shape), num_classes)
    _copy_into(tm, twin.to_torch(params))
    with torch.no_grad():  # running statistics (buffers) in torch's module order
        bns = [m for m in tm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for i, bn in enumerate(bns):
            bn.running_mean.copy_(torch.from_numpy(np.array(stats[f"BatchNorm_{i}"]["mean"])))
            bn.running_var.copy_(torch.from_numpy(np.array(stats[f"BatchNorm_{i}"]["var"])))
    return twin


# --------------------------------------------------------------------------- torch curvature

def torch_loss(twin: Twin, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the torch twin (eval mode)."""
    return F.cross_entropy(twin.torch_model(x), y)


def torch_grad(twin: Twin, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Plain gradient (forward + backward)."""
    return torch.autograd.grad(torch_loss(twin, x, y), twin.torch_params())


def torch_hvp(twin: Twin, x: torch.Tensor, y: torch.Tensor,
              v: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """PyHessian's double-backward HVP from scratch: grad with ``create_graph=True``, then
    ``torch.autograd.grad(grads, params, grad_outputs=v)``."""
    params = twin.torch_params()
    grads = torch.autograd.grad(torch_loss(twin, x, y), params, create_graph=True)
    return torch.autograd.grad(grads, params, grad_outputs=list(v))


def torch_hvp_amortised(twin: Twin, x: torch.Tensor,
                        y: torch.Tensor) -> Callable[[Sequence[torch.Tensor]], Any]:
    """PyHessian's single-batch form: the graph of the gradient is built once and kept
    (``retain_graph=True``); each product then runs only the second backward pass."""
    params = twin.torch_params()
    grads = torch.autograd.grad(torch_loss(twin, x, y), params, create_graph=True)

    def product(v: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(grads, params, grad_outputs=list(v), retain_graph=True)

    return product


def max_rel_diff(a: PyTree, b: PyTree) -> float:
    """``max |a - b| / max |b|`` over all entries of two same-structured pytrees."""
    fa = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(a)])
    fb = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(b)])
    return float(np.max(np.abs(fa - fb)) / np.max(np.abs(fb)))
