"""``plain``: a result as JSON types, for every ``--json`` output and ``Report.as_dict``."""

from __future__ import annotations

import math

import numpy as np


def plain(value):
    """``value`` as JSON types: NumPy scalars and arrays, tuples and paths converted, nan and inf as null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
