"""Run a module (``python tests/no_tensorflow.py fer.train ...``) or code (``... -c CODE``) in a
process where ``import tensorflow`` raises ImportError, as on a machine without TensorFlow."""

import importlib.abc
import runpy
import sys
from pathlib import Path


class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"No module named {name!r} (TensorFlow is blocked in this process)")
        return None


sys.meta_path.insert(0, NoTensorFlow())
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    if sys.argv[1] == "-c":
        code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
        exec(compile(code, "<-c>", "exec"), {"__name__": "__main__"})
    else:
        module, sys.argv = sys.argv[1], sys.argv[1:]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
