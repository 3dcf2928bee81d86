"""What ``pip install -r requirements.txt`` gets on each platform the README names (Linux and
macOS): every line pinned, and a TensorFlow that has a wheel there (tensorflow-cpu has no macOS
wheel; the plain tensorflow wheel is the CPU build on macOS)."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from fer import PROJECT_ROOT

PLATFORMS = {"linux": {"sys_platform": "linux", "platform_system": "Linux"},
             "macos": {"sys_platform": "darwin", "platform_system": "Darwin"}}


def requirements(name: str) -> list[Requirement]:
    lines = (PROJECT_ROOT / name).read_text().splitlines()
    return [Requirement(line) for line in (line.split("#")[0].strip() for line in lines) if line]


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-jax.txt"])
def test_every_dependency_is_pinned(name):
    for requirement in requirements(name):
        assert str(requirement.specifier).startswith("=="), requirement


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_each_platform_gets_exactly_one_tensorflow_with_a_wheel_there(platform):
    environment = {"python_version": "3.11", "python_full_version": "3.11.7", **PLATFORMS[platform]}
    chosen = [r.name for r in requirements("requirements.txt")
              if r.name.startswith("tensorflow") and (r.marker is None or r.marker.evaluate(environment))]
    assert chosen == (["tensorflow"] if platform == "macos" else ["tensorflow-cpu"])


def test_the_training_worker_s_requirements_include_what_it_imports():
    """The worker reads run files through their JSON Schemas (fer.schemas)."""
    names = {r.name.lower() for r in requirements("requirements-jax.txt")}
    assert {"keras", "jax", "jaxlib", "numpy", "pandas", "jsonschema"} <= names
