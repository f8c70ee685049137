"""Weight arm (SPEC 4): the Pensia et al. construction and its certificate."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.networks import Pool, forward, pool_prefix, weight_net
from prune_jax.slth.pensia import (
    pensia_certificate,
    pensia_network,
    pensia_table,
    required_width,
)
from prune_jax.slth.supnorm import SupSearch, sup_error

FAST = SupSearch(n_samples=1024, ascent_starts=16, ascent_steps=24)


def _problem(seed: int, d: int, size: int) -> tuple[np.ndarray, Pool]:
    rng = np.random.default_rng(seed)
    w_star = rng.normal(size=d)
    return w_star / np.linalg.norm(w_star), Pool(rng.normal(size=(size, d)),
                                                 rng.normal(size=size))


@pytest.mark.parametrize("d", [2, 4])
def test_certificate_recomputed_from_the_network_itself(d: int) -> None:
    """Independent check of the derivation: on x = +-e_j the masked network computes the two
    subset sums S+_j, S-_j, and the certificate is sqrt(sum_j max(|S+_j - w*_j|, |S-_j + w*_j|)^2).
    """
    w_star, pool = _problem(d, d, 24 * d)
    table = pensia_table(w_star, pool, max_items=12)
    for width in (4 * d, 12 * d, 24 * d):
        built = pensia_network(table, width)
        hidden = np.asarray(built.mask.hidden)
        rows = np.flatnonzero(hidden.any(axis=1))
        assert np.all(hidden.sum(axis=1)[rows] == 1)  # one input coordinate per kept unit
        assert np.all(np.flatnonzero(hidden[rows]) % d == rows % d)  # and it is i mod d
        assert np.array_equal(built.mask.output, hidden.any(axis=1))
        net = weight_net(pool_prefix(pool, width), built.mask)
        eye = np.eye(d)
        with jax.enable_x64(True):
            s_plus = np.asarray(forward(net, eye))
            s_minus = np.asarray(forward(net, -eye))
        m = np.maximum(np.abs(s_plus - w_star), np.abs(s_minus + w_star))
        assert built.certificate == pytest.approx(np.linalg.norm(m), rel=1e-11, abs=2e-12)


@pytest.mark.parametrize("seed", range(4))
def test_certificate_is_never_below_the_exact_error_in_2d(seed: int) -> None:
    w_star, pool = _problem(seed, 2, 64)
    table = pensia_table(w_star, pool, max_items=20)
    cert = pensia_certificate(table)
    for width in (33, 40, 48, 56, 64):  # one padded shape (64 units): one compilation
        built = pensia_network(table, width)
        net = weight_net(pool_prefix(pool, width), built.mask)
        with jax.enable_x64(True):
            err = sup_error(jax.random.key(0), w_star, net, output_relu=True)
        assert err.exact
        assert err.value <= built.certificate
        assert built.certificate == cert[width]


def test_certificate_is_never_below_the_measured_error_in_4d() -> None:
    w_star, pool = _problem(9, 4, 16)  # 16 units: the padded shape of the other d = 4 tests
    table = pensia_table(w_star, pool, max_items=8)
    for width in (8, 12, 16):
        built = pensia_network(table, width)
        net = weight_net(pool_prefix(pool, width), built.mask)
        with jax.enable_x64(True):
            err = sup_error(jax.random.key(width), w_star, net, True, FAST)
        assert not err.exact
        assert err.value <= built.certificate


def test_certificate_non_increasing_and_reaches_small_eps() -> None:
    w_star, pool = _problem(1, 2, 128)
    cert = pensia_certificate(pensia_table(w_star, pool, max_items=24))
    assert cert[0] == pytest.approx(1.0)  # nothing kept: m = |w*|
    assert np.all(np.diff(cert) <= 1e-15)
    # the subset sums are exact: ~2^-k residuals after a few dozen units (logarithmic)
    n = required_width(cert, 2.0**-12)
    assert n is not None and n <= 128
    assert cert[n] <= 2.0**-12 < cert[n - 1]


def test_required_width_and_bad_input() -> None:
    assert required_width(np.array([1.0, 0.5, 0.2, 0.2, 0.01]), 0.3) == 2
    assert required_width(np.array([1.0, 0.5]), 0.1) is None
    assert required_width(np.array([0.4, 0.1]), 0.2, widths=np.array([10, 20])) == 20
    w_star, pool = _problem(0, 2, 8)
    with pytest.raises(ValueError, match="eps"):
        required_width(np.array([1.0]), -1.0)
    with pytest.raises(ValueError, match="max_items"):
        pensia_table(w_star, pool, max_items=0)
    with pytest.raises(ValueError, match=r"pool\.w"):
        pensia_table(np.array([1.0, 0.0, 0.0]), pool)
    with pytest.raises(ValueError, match="width"):
        pensia_network(pensia_table(w_star, pool, 4), 9)
