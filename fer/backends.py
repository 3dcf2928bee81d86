"""Keras backends a run can train on, without importing Keras or any framework.

A process picks its backend once, before its first ``import keras`` (Keras reads
``KERAS_BACKEND`` then); the worker does it from the run's config.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

BACKENDS: tuple[str, ...] = ("tensorflow", "jax")

# JAX compiles every function a run uses (the train step, and each eagerly run operation); kept on
# disk, a second run or a resume of the same network and batch size starts in seconds instead of
# compiling again (a tiny mini-Xception run on 2 CPU cores: 16 s -> 5 s). It lives in the cache
# folder (``.cache/jax``; ``FER_CACHE`` moves it); ``FER_JAX_CACHE`` names another folder, or
# ``off``; JAX's own ``JAX_COMPILATION_CACHE_DIR`` wins over both.
JAX_CACHE_ENV = "FER_JAX_CACHE"
JAX_CACHE_MAX_BYTES = 1 << 30  # JAX drops the least recently used entries beyond this
_OFF = {"off", "0", "no", "false", "none"}


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
    use_compilation_cache(backend)


def jax_cache_dir() -> Path | None:
    """The folder of the JAX compilation cache (created), or None when it is switched off or
    cannot be written (the run then compiles as usual)."""
    value = os.environ.get(JAX_CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    from fer.data import cache_dir

    try:
        folder = Path(value).expanduser() if value else cache_dir() / "jax"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to expand
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def use_compilation_cache(backend: str | None = None) -> Path | None:
    """Keep JAX's compiled functions in ``jax_cache_dir()`` when this process runs Keras on JAX;
    call before JAX compiles anything. Returns the folder it set up; None when there is nothing
    to set up: not JAX, switched off, or ``JAX_COMPILATION_CACHE_DIR`` already set (by the user,
    or by an earlier call, whose settings this process and its children keep)."""
    if (backend or default_backend()) != "jax" or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return None
    folder = jax_cache_dir()
    if folder is None:
        return None
    settings = {"jax_compilation_cache_dir": str(folder),
                # Keras on JAX compiles each eager operation too: small, but dozens per run.
                "jax_persistent_cache_min_compile_time_secs": 0}
    if _installed("filelock"):  # JAX needs it to trim the cache; without it, the cache grows
        settings["jax_compilation_cache_max_size"] = JAX_CACHE_MAX_BYTES
    if "jax" in sys.modules:
        for name, value in settings.items():
            sys.modules["jax"].config.update(name, value)
    else:  # read by JAX when it is imported
        os.environ.update({name.upper(): str(value) for name, value in settings.items()})
    return folder
