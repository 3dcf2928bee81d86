"""--mixed-precision: bfloat16 where the hardware has it (JAX, CPUs with AVX-512 BF16 or AMX),
float16 on TensorFlow GPUs, float32 on CPUs without bfloat16 instructions (where 16-bit is slower)."""

from __future__ import annotations

import pytest
from helpers import run_cli

from fer import devices
from fer.run_folder import RunFolder


@pytest.fixture
def cpu_flags(monkeypatch, tmp_path):
    """Pretend the CPU has the given flags (a fake /proc/cpuinfo)."""
    def set_flags(flags: str) -> None:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real_open = open
        monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
            info if str(path) == "/proc/cpuinfo" else path, *a, **k))
        devices.cpu_bfloat16.cache_clear()
    yield set_flags
    devices.cpu_bfloat16.cache_clear()


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_bf16", "avx512_bf16"),
    ("fpu avx512f amx_bf16 amx_tile", "amx_bf16"),
    ("fpu sse avx2 fma", None),
    ("fpu avx512f avx512bw", None),  # AVX-512 without its BF16 extension
])
def test_the_cpus_bfloat16_instructions_are_read_from_its_flags(cpu_flags, flags, expected):
    cpu_flags(flags)
    assert devices.cpu_bfloat16() == expected


def test_each_backend_and_device_gets_its_16_bit_type(cpu_flags):
    cpu_flags("avx2 avx512_bf16")
    assert devices.mixed_precision_policy("tensorflow", gpu=False) == "mixed_bfloat16"
    assert devices.mixed_precision_policy("tensorflow", gpu=True) == "mixed_float16"
    assert devices.mixed_precision_policy("jax", gpu=False) == "mixed_bfloat16"
    cpu_flags("avx2 fma")
    assert devices.mixed_precision_policy("tensorflow", gpu=False) is None
    assert "trains in float32" in devices.mixed_precision_note("tensorflow", gpu=False)
    assert devices.mixed_precision_policy("jax", gpu=False) == "mixed_bfloat16"


def test_a_mixed_precision_run_on_a_tensorflow_cpu_says_what_it_computes_in(tiny_data, tmp_path):
    result = run_cli(["fer.train", "--experiments", tmp_path, "--name", "bf16", "--backend", "tensorflow",
                      "--architecture", "mini_xception", "--data", tiny_data, "--epochs", "1",
                      "--batch-size", "8", "--no-augment", "--mixed-precision"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "bf16" / "train.log").read_text() if (tmp_path / "bf16" / "train.log").is_file() \
        else result.stdout + result.stderr
    expected = devices.mixed_precision_note("tensorflow", gpu=False)
    assert f"[fer] mixed precision: {expected}" in log
    assert RunFolder(tmp_path / "bf16").read_status()["state"] == "finished"
