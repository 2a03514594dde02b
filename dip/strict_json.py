"""JSON that strict parsers read: every JSON the project writes (summary.json, the lines `dip fit` and
`dip bench --json` print) goes through `dumps`, which has no ``NaN`` or ``Infinity`` in it.

A number that is not finite is written as ``null`` and a note beside it says what it was, under the key
with ``_note`` appended::

    "psnr_observed": null, "psnr_observed_note": "inf: the image equals the reference (zero error)"

The note starts with ``inf``, ``-inf`` or ``nan``, then optionally ``: `` and the reason. Inside a list
the entries are ``null`` and the list's note names each one by position: ``"[2]=inf, [5]=nan"``. `decode`
turns notes back into the numbers, so that a record read back is the record written; older files that
hold a bare ``Infinity`` are read as they are (Python's `json.loads` accepts it).

Example::

    >>> dumps({"psnr": float("inf"), "ssim": 1.0})
    '{"psnr": null, "psnr_note": "inf: the image equals the reference (zero error)", "ssim": 1.0}'
    >>> decode(json.loads(dumps({"psnr": float("inf")})))
    {'psnr': inf}
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

NOTE = "_note"
_REASONS = {("psnr", "inf"): "the image equals the reference (zero error)"}
_VALUES = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _kind(value: float) -> str:
    return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"


def _note(key: str, kind: str) -> str:
    """'inf', or 'inf: <why>' where the key's prefix (psnr_*) says why."""
    reason = next((why for (prefix, k), why in _REASONS.items() if key.startswith(prefix) and k == kind), None)
    return f"{kind}: {reason}" if reason else kind


def _number(value: Any) -> float | None:
    """`value` as a float if it is a real number that is not an integer (NumPy's included), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return float(value)
    return None


def encode(obj: Any) -> Any:
    """`obj` (dicts, lists, numbers, strings) with each non-finite number written as None and noted beside
    it (see the module's docstring); NumPy floats become floats.

    :raises ValueError: a dict already holds the note's key of a non-finite value.
    """
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            number = _number(value)
            if number is not None and not math.isfinite(number):
                out[key], note = None, _note(str(key), _kind(number))
            elif isinstance(value, (list, tuple)):
                out[key], note = _encode_list(value)
            else:
                out[key], note = encode(value), None
            if note is not None:
                if f"{key}{NOTE}" in obj:
                    raise ValueError(f"{key}: not finite, and {key}{NOTE} is already taken")
                out[f"{key}{NOTE}"] = note
        return out
    if isinstance(obj, (list, tuple)):
        return _encode_list(obj)[0]
    number = _number(obj)
    if number is not None:
        return number if math.isfinite(number) else None
    return obj


def _encode_list(values) -> tuple[list, str | None]:
    out, notes = [], []
    for i, value in enumerate(values):
        number = _number(value)
        if number is not None and not math.isfinite(number):
            out.append(None)
            notes.append(f"[{i}]={_kind(number)}")
        else:
            out.append(encode(value))
    return out, ", ".join(notes) or None


def decode(obj: Any) -> Any:
    """The inverse of `encode`: each noted None becomes its number again and the notes go."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        note = obj.get(f"{key}{NOTE}")
        if key.endswith(NOTE) and key[: -len(NOTE)] in obj:
            continue
        if value is None and isinstance(note, str) and note.split(":")[0] in _VALUES:
            out[key] = _VALUES[note.split(":")[0]]
        elif isinstance(value, list) and isinstance(note, str):
            values = decode(value)
            for entry in note.split(", "):
                position, _, kind = entry.partition("=")
                values[int(position.strip("[]"))] = _VALUES[kind]
            out[key] = values
        else:
            out[key] = decode(value)
    return out


def dumps(obj: Any, **kwargs) -> str:
    """`json.dumps` of `encode(obj)` with ``allow_nan=False``: a number that slipped past `encode` raises
    ValueError rather than write what strict parsers refuse. Keyword arguments go to `json.dumps`."""
    return json.dumps(encode(obj), allow_nan=False, **kwargs)


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` as jq and JavaScript do.

    :raises ValueError: the text holds one of them.
    """

    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)
