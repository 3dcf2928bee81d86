"""The devices a run trains on: process setup before Keras loads, data parallelism, determinism.

``prepare_process(config)`` must run before the first ``import keras`` of the process (the worker
calls it first thing); the rest import Keras and the backend's framework.

With ``devices`` > 1 the global batch (``batch_size``) is split evenly across the devices and the
gradients are averaged, so the learning rate applies to the global batch unchanged: scale it
yourself when you scale the batch. The saved model is an ordinary single-device model.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import os
import sys
from collections.abc import Iterator

from fer.backends import activate
from fer.config import TrainConfig


class DeviceError(RuntimeError):
    """The run asks for devices this machine does not have."""


# CPU features that make bfloat16 convolutions fast in TensorFlow's oneDNN kernels (AVX-512 BF16
# on AMD Zen 4 and Intel Cooper Lake on; AMX on Intel Sapphire Rapids on). Without them bfloat16
# is emulated and slower than float32.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_bfloat16() -> str | None:
    """The CPU feature flag (``CPU_BFLOAT16_FLAGS``) this machine has, or None (also off Linux)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return next((flag for flag in CPU_BFLOAT16_FLAGS if flag in flags), None)
    except OSError:
        pass
    return None


def mixed_precision_policy(backend: str, gpu: bool) -> str | None:
    """The Keras dtype policy ``--mixed-precision`` gives: bfloat16 under JAX (TPUs, recent GPUs)
    and on TensorFlow CPUs with bfloat16 instructions, float16 on TensorFlow GPUs, None (float32)
    on TensorFlow CPUs without them."""
    if backend == "jax":
        return "mixed_bfloat16"
    if gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_bfloat16() else None


def mixed_precision_note(backend: str, gpu: bool) -> str:
    """What ``--mixed-precision`` does here, for the Train page and the worker's log."""
    policy = mixed_precision_policy(backend, gpu)
    if policy is None:
        return ("this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX), where 16-bit compute is "
                "slower than 32-bit: the run trains in float32")
    where = "a GPU" if gpu else f"this CPU ({cpu_bfloat16()})" if backend == "tensorflow" else "JAX"
    return f"{policy.split('_')[1]} convolutions on {where}, float32 weights and softmax"


def _add_xla_flag(flag: str) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    name = flag.split("=")[0]
    if name not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


class _TensorFlowRefused(importlib.abc.MetaPathFinder):
    """Keras imports TensorFlow whenever it can, even under JAX (``keras.utils.set_random_seed``
    seeds TensorFlow too): seconds and hundreds of MB for nothing. This makes it look absent."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"{name} is not used in a process that trains on another backend")
        return None


def prepare_process(config: TrainConfig) -> None:
    """Pick the run's backend and set the switches its framework reads when it is imported."""
    activate(config.backend)
    if config.backend != "tensorflow" and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _TensorFlowRefused())
    if config.backend == "jax":
        # On a machine without accelerators, JAX shows the CPU as this many devices (one device
        # otherwise); with a GPU or TPU the flag is ignored and the real devices are used.
        if config.devices > 1:
            _add_xla_flag(f"--xla_force_host_platform_device_count={config.devices}")
        if config.deterministic:
            _add_xla_flag("--xla_gpu_deterministic_ops=true")
    if config.backend == "tensorflow" and (config.batch_size // config.devices) % 2:
        # oneDNN's CPU kernels corrupt memory when training strided convolutions (mini-Xception's
        # 1x1/2 residuals) on odd batch sizes; TensorFlow reads this switch when it is imported.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


def _jax_devices(count: int) -> list:
    import jax

    devices = jax.devices()
    if len(devices) < count:
        raise DeviceError(f"devices={count} but JAX sees {len(devices)} {devices[0].platform} "
                          f"device{'s' if len(devices) > 1 else ''} here")
    return devices[:count]


@functools.cache
def _tensorflow_devices(count: int) -> list[str]:
    # Once per process: the CPU can be split into logical devices only before TensorFlow starts.
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < count:
            raise DeviceError(f"devices={count} but TensorFlow sees {len(gpus)} GPU(s) here")
        return [f"/gpu:{i}" for i in range(count)]
    if count > 1:
        # No GPU: split the CPU into logical devices (same arithmetic, no speed-up), which must
        # happen before TensorFlow initialises its runtime.
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
        except RuntimeError as exc:
            raise DeviceError(f"cannot split the CPU into {count} devices: {exc}") from None
    return [f"/cpu:{i}" for i in range(count)]


def open_devices(config: TrainConfig) -> str:
    """Check that the run's devices exist (splitting a CPU-only TensorFlow into logical devices
    when asked for several) and say what they are, e.g. ``1 x cpu`` or ``2 x NVIDIA H100``.

    Call right after importing Keras, before anything runs on a device.
    """
    import keras

    if keras.backend.backend() == "jax":
        devices = _jax_devices(config.devices)
        kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
    else:
        import tensorflow as tf

        _tensorflow_devices(config.devices)
        gpus = tf.config.list_physical_devices("GPU")
        kind = "cpu"
        if gpus:
            kind = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
    return f"{config.devices} x {kind}"


@contextlib.contextmanager
def training_scope(config: TrainConfig) -> Iterator[None]:
    """Build, compile and fit the model inside this: data parallelism over ``config.devices``."""
    import keras

    if config.devices == 1:
        yield
        return
    if keras.backend.backend() == "jax":
        devices = _jax_devices(config.devices)
        names = [f"{d.platform}:{d.id}" for d in devices]
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
        return
    with _mirrored_strategy(config.devices).scope():
        yield


@functools.cache
def _mirrored_strategy(count: int):
    # One strategy per process: the model's variables belong to the strategy that created them.
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=_tensorflow_devices(count))


def make_deterministic(config: TrainConfig) -> None:
    """Seed every generator; with ``deterministic``, also ask for deterministic kernels."""
    import keras

    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
