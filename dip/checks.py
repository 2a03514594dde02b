"""The type predicates every input check shares: a count must be an integer and a level a number, each
refused by name where it is not (a 2.5 or a "100" would otherwise become another budget or a TypeError deep
in the loop).

NumPy's scalars count as Python's (a seed from `np.arange`, a σ from an array); a bool is neither an integer
nor a number here, although Python counts it as both.

>>> import numpy as np
>>> [is_integer(v) for v in (3, np.int64(3), 3.0, True, "3")]
[True, True, False, False, False]
>>> [is_number(v) for v in (3, 0.5, np.float32(0.5), False, "0.5")]
[True, True, True, False, False]
>>> type(python_scalar(np.int64(3))).__name__, type(python_scalar(0.5)).__name__
('int', 'float')
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_integer(value: Any) -> bool:
    """Whether `value` is an integer (Python's or NumPy's), not a bool."""
    # NumPy's timedelta64 is one of its integer types, and a duration is no count.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.timedelta64))


def is_number(value: Any) -> bool:
    """Whether `value` is a real number (an integer or a float, Python's or NumPy's), not a bool."""
    return is_integer(value) or isinstance(value, (float, np.floating))


def python_scalar(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (so records and config hashes read the same whatever
    made the value); anything else unchanged."""
    if is_integer(value):
        return int(value)
    return float(value) if is_number(value) else value


__all__ = ["is_integer", "is_number", "python_scalar"]
