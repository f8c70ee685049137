"""The Flax model zoo of the PQI/SAP paper and the fundamental-limit paper: conventions in
:mod:`prune_jax.models.common`, names in :func:`get_model`. Models import nothing from the
core math (curvature, limits, sparsity)."""

from __future__ import annotations

from prune_jax.models.alexnet import AlexNet
from prune_jax.models.cnn import CNN
from prune_jax.models.cnn1d import CNN1D
from prune_jax.models.common import init_variables, param_count
from prune_jax.models.mlp import MLP, Linear
from prune_jax.models.registry import MODEL_NAMES, get_model
from prune_jax.models.resnet import BasicBlock, Bottleneck, ResNet
from prune_jax.models.vgg import VGG

__all__ = ["CNN", "CNN1D", "MLP", "MODEL_NAMES", "VGG", "AlexNet", "BasicBlock", "Bottleneck",
           "Linear", "ResNet", "get_model", "init_variables", "param_count"]
