"""Saved-model files of the statistics: JSON only, no code executed on load.

One place for what the normative model (:mod:`danemap.stats.normative`) and the
classifier (:mod:`danemap.stats.classify`) share: storing sklearn-style estimators
(ComBat, encoders) as plain JSON with an allow-list of classes, and reading a model
file with its format and version checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from danemap.errors import InputError

__all__: list[str] = []


def encode_value(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {"__ndarray__": [encode_value(v) for v in obj.tolist()], "dtype": "object"}
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {"__dict__": [[encode_value(k), encode_value(v)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [encode_value(v) for v in obj]
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    if hasattr(obj, "__dict__") and hasattr(obj, "get_params"):  # nested estimator
        return {"__estimator__": estimator_to_dict(obj)}
    if hasattr(obj, "__dataclass_fields__"):
        return {"__dataclass__": type(obj).__module__ + ":" + type(obj).__qualname__,
                "fields": {k: encode_value(v) for k, v in vars(obj).items()}}
    raise TypeError(f"cannot store a {type(obj).__name__} in a JSON model file")


_ALLOWED_CLASSES = {
    "danemap.stats.combat:ComBat",
    "danemap.stats._design:CovariateEncoder",
}


def _load_class(path: str) -> Any:
    if path not in _ALLOWED_CLASSES:
        raise InputError(f"model file: class {path!r} is not one danemap stores; refusing it")
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def decode_value(obj: Any) -> Any:
    if isinstance(obj, list):
        return [decode_value(v) for v in obj]
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            if obj["dtype"] == "object":
                return np.array([decode_value(v) for v in obj["__ndarray__"]], dtype=object)
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__dict__" in obj:
            return {_hashable(decode_value(k)): decode_value(v) for k, v in obj["__dict__"]}
        if "__estimator__" in obj:
            return estimator_from_dict(obj["__estimator__"])
        if "__dataclass__" in obj:
            cls = _load_class(obj["__dataclass__"])
            inst = cls.__new__(cls)
            for k, v in obj["fields"].items():
                setattr(inst, k, decode_value(v))
            return inst
        return {k: decode_value(v) for k, v in obj.items()}
    return obj


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def estimator_to_dict(est: Any) -> dict[str, Any]:
    """Store an sklearn-style estimator: its class, parameters and fitted attributes."""
    cls = type(est).__module__ + ":" + type(est).__qualname__
    fitted = {k: encode_value(v) for k, v in vars(est).items() if k.endswith("_")
              and not k.startswith("_")}
    return {"class": cls, "params": encode_value(est.get_params(deep=False)), "fitted": fitted}


def estimator_from_dict(data: Mapping[str, Any]) -> Any:
    """Rebuild an estimator stored by :func:`estimator_to_dict` (allowed classes only)."""
    cls = _load_class(str(data["class"]))
    est = cls(**decode_value(data["params"]))
    for k, v in data["fitted"].items():
        setattr(est, k, decode_value(v))
    return est


def read_model_file(path: str | os.PathLike[str], what: str, fmt: str,
                    version: int) -> dict[str, Any]:
    """Read a JSON model file and check its ``format`` and ``version``.

    Parameters
    ----------
    path : path-like
        The model file.
    what : str
        What the file holds, for messages (``"normative model"``).
    fmt : str
        Expected value of the ``format`` field.
    version : int
        Expected value of the ``version`` field.

    Returns
    -------
    dict
        The file's content.

    Raises
    ------
    InputError
        Missing file, invalid JSON, another format or another version.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p}: file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {p}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{what} {p}: expected format {fmt!r}, found {found!r}")
    if data.get("version") != version:
        raise InputError(f"{what} {p}: expected version {version}, found "
                         f"{data.get('version')!r}")
    return data


@contextmanager
def model_fields(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn a missing or mistyped field met while rebuilding a model into an InputError."""
    try:
        yield
    except (KeyError, TypeError) as exc:
        raise InputError(f"{what} {Path(path)}: incomplete model file ({exc})") from exc
