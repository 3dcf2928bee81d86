"""Keras backends a run can train on, without importing Keras or any framework.

A process picks its backend once, before its first ``import keras`` (Keras reads
``KERAS_BACKEND`` then); the worker does it from the run's config.
"""

from __future__ import annotations

import importlib.util
import os
import sys

BACKENDS: tuple[str, ...] = ("tensorflow", "jax")


class BackendError(RuntimeError):
    """The requested backend is not installed or cannot be switched to in this process."""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked with sys.modules[name] = None
        return False


def installed_backends() -> list[str]:
    """The backends whose framework is importable here (found on the path, not imported)."""
    return [name for name in BACKENDS if _installed(name)]


def default_backend() -> str:
    """``KERAS_BACKEND`` when it names a supported backend, else the first installed one."""
    wanted = os.environ.get("KERAS_BACKEND", "").strip().lower()
    if wanted in BACKENDS:
        return wanted
    installed = installed_backends()
    return installed[0] if installed else BACKENDS[0]


def activate(backend: str) -> None:
    """Make ``backend`` the Keras backend of this process; call before importing Keras."""
    if backend not in BACKENDS:
        raise BackendError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if not _installed(backend):
        installed = ", ".join(installed_backends()) or "none"
        raise BackendError(f"backend {backend!r} is not installed here (installed: {installed}); "
                           f"install it (see the README's 'Backends and devices') or pick another")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise BackendError(f"Keras already runs on {current} in this process; "
                               f"{backend} needs a new process")
        return
    os.environ["KERAS_BACKEND"] = backend
