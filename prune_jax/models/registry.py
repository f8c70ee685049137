"""Model registry: every model of both papers by name (SPEC 2.4, 3.2)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from prune_jax.models import cnn, mlp
from prune_jax.models.alexnet import AlexNet
from prune_jax.models.cnn1d import CNN1D
from prune_jax.models.resnet import ResNet
from prune_jax.models.vgg import VGG, VGG16_CONFIG

__all__ = ["MODEL_NAMES", "get_model"]

_P = functools.partial
_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    # PQI paper (appendix C, Tables 1-3)
    "linear": mlp.Linear,
    "mlp": _P(mlp.MLP, hidden=mlp.PQI_MLP_HIDDEN),
    "cnn": _P(cnn.CNN, features=cnn.PQI_CNN_FEATURES, num_pools=3),
    # small models for the offline 8x8 digits default
    "mlp_small": _P(mlp.MLP, hidden=mlp.SMALL_MLP_HIDDEN),
    "cnn_small": _P(cnn.CNN, features=cnn.SMALL_CNN_FEATURES, num_pools=2),
    # sequences (MNIST-1D, offline)
    "cnn1d": CNN1D,
    # fundamental-limit paper (SPEC 2.4); ResNet18 is also the PQI paper's
    "fc5": _P(mlp.MLP, hidden=mlp.FC5_HIDDEN),
    "fc12": _P(mlp.MLP, hidden=mlp.FC12_HIDDEN),
    "alexnet": _P(AlexNet, upsample=7),
    "vgg16": _P(VGG, config=VGG16_CONFIG),
    "resnet18": _P(ResNet, stage_sizes=(2, 2, 2, 2), block="basic"),
    "resnet50": _P(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck"),
}

MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)
"""Names accepted by :func:`get_model`."""


def get_model(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """The model called ``name`` (one of :data:`MODEL_NAMES`) with ``num_classes`` outputs.

    ``kwargs`` override the preset's fields (e.g. ``get_model("cnn", num_classes=10,
    num_pools=4)`` for the PQI paper's Table 2 CNN); lists become tuples, so the module stays
    hashable and can be a static ``jit`` argument. Unknown names or fields raise ``ValueError``.
    """
    if name not in _FACTORIES:
        raise ValueError(f"name must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    factory = _FACTORIES[name]
    cls = getattr(factory, "func", factory)
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "num_classes"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"get_model({name!r}): unknown keyword arguments {unknown}; "
                         f"valid ones are {sorted(fields)}")
    return factory(num_classes=num_classes,
                   **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
