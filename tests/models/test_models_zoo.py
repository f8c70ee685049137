"""Model zoo: parameter counts (SPEC 2.4, PQI Table 3), output shapes, naming, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.models import MODEL_NAMES, get_model, init_variables, param_count
from prune_jax.models.alexnet import upsample_nearest
from prune_jax.tree import default_prunable, leaf_names

CIFAR = (32, 32, 3)
MNIST = (28, 28, 1)
DIGITS = (8, 8, 1)


@pytest.mark.parametrize(
    ("name", "input_shape", "num_classes", "expected"),
    [
        # fundamental-limit paper, SPEC 2.4 (exact counts)
        ("fc5", CIFAR, 10, 3_885_010),
        ("fc12", CIFAR, 10, 7_269_610),
        ("vgg16", CIFAR, 10, 14_728_266),
        ("resnet18", CIFAR, 100, 11_220_132),
        ("resnet50", CIFAR, 100, 23_705_252),
        # AlexNet of the reference code (7x upsampled CIFAR); no count in the paper
        ("alexnet", CIFAR, 10, 46_787_978),
        # PQI paper, Table 3: 7.9 K / 30.7 K, 136.1 K / 428.9 K, 1.6 M, 11.2 M
        ("linear", MNIST, 10, 7_850),
        ("linear", CIFAR, 10, 30_730),
        ("mlp", MNIST, 10, 136_074),
        ("mlp", CIFAR, 10, 428_938),
        ("cnn", MNIST, 10, 1_556_874),
        ("cnn", CIFAR, 10, 1_558_026),
        ("resnet18", CIFAR, 10, 11_173_962),
        # small defaults for digits
        ("mlp_small", DIGITS, 10, 17_226),
    ],
)
def test_parameter_counts(name: str, input_shape: tuple[int, ...], num_classes: int,
                          expected: int) -> None:
    assert param_count(get_model(name, num_classes=num_classes), input_shape) == expected


def test_cnn_pool_count_does_not_change_parameters() -> None:
    three = param_count(get_model("cnn", num_classes=10), MNIST)
    four = param_count(get_model("cnn", num_classes=10, num_pools=4), MNIST)
    assert three == four


@pytest.mark.parametrize(
    ("name", "input_shape", "num_classes"),
    [("linear", DIGITS, 10), ("mlp", MNIST, 10), ("mlp_small", DIGITS, 10),
     ("fc5", CIFAR, 10), ("fc12", CIFAR, 10), ("cnn", DIGITS, 10), ("cnn", CIFAR, 10),
     ("cnn_small", DIGITS, 10), ("alexnet", CIFAR, 10), ("vgg16", CIFAR, 10),
     ("resnet18", CIFAR, 100), ("resnet50", CIFAR, 100), ("resnet18", MNIST, 10)],
)
def test_output_shapes_and_prunable_kernels(name: str, input_shape: tuple[int, ...],
                                            num_classes: int) -> None:
    model = get_model(name, num_classes=num_classes)
    x = jax.ShapeDtypeStruct((3, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda k, x: model.init(k, x), jax.random.key(0), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert out.shape == (3, num_classes)
    assert out.dtype == jnp.float32
    names = leaf_names(variables["params"])
    kernels = [n for n, leaf in zip(names, jax.tree.leaves(variables["params"]), strict=True)
               if default_prunable(n, leaf)]
    # every Dense/Conv weight is a 'kernel' of rank >= 2; nothing else is prunable
    assert kernels and all(n.endswith("kernel") for n in kernels)
    assert all(not n.endswith("kernel") for n in names if n not in kernels)
    assert all(n.split("/")[-1] in {"kernel", "bias", "scale"} for n in names)


def test_resnet_names_and_projection_shortcuts() -> None:
    variables = jax.eval_shape(
        lambda k: get_model("resnet18", num_classes=10).init(k, jnp.zeros((1, *CIFAR))),
        jax.random.key(0))
    names = set(leaf_names(variables["params"]))
    assert "stem_conv/kernel" in names and "head/kernel" in names
    # stage 0 keeps width and stride: identity shortcut; later stages project
    assert not any(n.startswith("stage0_block0/shortcut") for n in names)
    assert "stage1_block0/shortcut_conv/kernel" in names
    assert not any(n.startswith("stage1_block1/shortcut") for n in names)
    assert variables["params"]["stage3_block1"]["Conv_1"]["kernel"].shape == (3, 3, 512, 512)


def test_mlp_flattens_images_itself() -> None:
    model = get_model("mlp_small", num_classes=10)
    variables = init_variables(model, jax.random.key(0), DIGITS)
    x = jax.random.normal(jax.random.key(1), (5, *DIGITS))
    np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, x.reshape(5, 64)),
                               rtol=1e-6)


def test_init_variables_collections() -> None:
    mlp = init_variables(get_model("mlp_small", num_classes=10), jax.random.key(0), DIGITS)
    cnn = init_variables(get_model("cnn_small", num_classes=10), jax.random.key(0), DIGITS)
    assert set(mlp) == {"params"}
    assert set(cnn) == {"params", "batch_stats"}
    kernel = mlp["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (64, 128)
    # He normal: variance 2 / fan_in
    assert abs(float(jnp.var(kernel)) * 64 / 2 - 1) < 0.15
    assert float(jnp.abs(mlp["params"]["Dense_0"]["bias"]).max()) == 0.0


def test_upsample_matches_nearest_interpolation() -> None:
    # torch.nn.functional.interpolate(scale_factor=7, mode="nearest") on NCHW equals this
    # independent numpy reference (checked against torch 2.13 when the model was written):
    # every input pixel becomes a 7x7 block.
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3)).astype(np.float32)
    ref = np.repeat(np.repeat(x, 7, axis=1), 7, axis=2)
    np.testing.assert_array_equal(np.asarray(upsample_nearest(jnp.asarray(x), 7)), ref)


def test_registry_names() -> None:
    assert set(MODEL_NAMES) >= {"linear", "mlp", "cnn", "mlp_small", "cnn_small", "fc5", "fc12",
                                "alexnet", "vgg16", "resnet18", "resnet50"}


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"name must be one of .*resnet18"):
        get_model("resnet19", num_classes=10)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        get_model("mlp", num_classes=bad)  # type: ignore[arg-type]


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(ValueError, match="widths"):
        get_model("mlp", num_classes=10, widths=(3,))


def test_overrides_and_list_arguments() -> None:
    model = get_model("mlp", num_classes=3, hidden=[7, 5])
    assert model.hidden == (7, 5)
    hash(model)  # usable as a static jit argument
    assert param_count(model, (4,)) == 4 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3


@pytest.mark.parametrize(
    ("name", "kwargs", "shape", "match"),
    [("cnn", {"num_pools": 4}, DIGITS, "at least 16x16"),
     ("cnn", {"num_pools": 5}, CIFAR, "num_pools"),
     ("vgg16", {}, MNIST, "at least 32x32"),
     ("alexnet", {"upsample": 2}, CIFAR, "at least 65x65"),
     ("alexnet", {"upsample": 0}, CIFAR, "upsample"),
     ("resnet18", {"block": "wide"}, CIFAR, "block"),
     ("cnn_small", {}, (64,), r"\(N, H, W, C\)")],
)
def test_bad_inputs_raise_clear_errors(name: str, kwargs: dict[str, object],
                                       shape: tuple[int, ...], match: str) -> None:
    model = get_model(name, num_classes=10, **kwargs)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *shape))), jax.random.key(0))


def test_alexnet_smallest_input() -> None:
    model = get_model("alexnet", num_classes=10, upsample=1)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 65, 65, 3))),
                               jax.random.key(0))
    assert variables["params"]["Dense_0"]["kernel"].shape == (256, 4096)


def test_init_variables_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        init_variables(get_model("mlp", num_classes=10), jax.random.key(0), (0, 3))
