"""Run a module (``python tests/jax_only.py fer.train ...``) or code (``... -c CODE``) as on a
machine with only requirements-jax.txt installed: importing TensorFlow or any other package that
only requirements.txt brings (the dashboard's) raises ImportError."""

import importlib.abc
import runpy
import sys
from pathlib import Path

# Import names of the packages in requirements.txt that requirements-jax.txt leaves out.
DASHBOARD_ONLY = {"tensorflow", "streamlit", "plotly", "skimage", "playwright", "pytest", "optuna",
                  "sqlalchemy", "alembic", "psycopg2", "authlib"}


class DashboardOnlyPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in DASHBOARD_ONLY:
            raise ImportError(f"No module named {name!r} (not in requirements-jax.txt)")
        return None


sys.meta_path.insert(0, DashboardOnlyPackages())
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    if sys.argv[1] == "-c":
        code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
        exec(compile(code, "<-c>", "exec"), {"__name__": "__main__"})
    else:
        module, sys.argv = sys.argv[1], sys.argv[1:]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
