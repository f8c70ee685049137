"""Private shape bucketing: pad to a few sizes so that jitted kernels compile a few times."""

from __future__ import annotations

import numpy as np


def bucket(n: int, smallest: int = 8) -> int:
    """Next power of two >= max(n, smallest)."""
    return max(smallest, 1 << (int(n) - 1).bit_length())


def pad_axis(x: object, size: int, axis: int = 0) -> np.ndarray:
    """Zero-pad host array ``x`` along ``axis`` up to ``size`` entries."""
    x = np.asarray(x)
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return np.pad(x, widths)
