"""Name -> detector class. Config names a detector; this builds it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from udfs.detectors.base import BaseDetector

_REGISTRY: dict[str, type[BaseDetector]] = {}
T = TypeVar("T", bound=type[BaseDetector])


def register(name: str) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"detector {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    # Importing the modules runs their @register decorators.
    from udfs.detectors import (  # noqa: F401
        contextual,
        deep,
        likelihood,
        logs,
        multivariate,
        series,
        statistical,
        tabular,
    )


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[BaseDetector]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown detector {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create(name: str, **params: Any) -> BaseDetector:
    cls = get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None
