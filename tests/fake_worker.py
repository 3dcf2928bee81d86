"""A stand-in training worker for sweep tests: ``python tests/fake_worker.py --run-dir DIR``.

It does what ``python -m fer.train --run-dir`` does to a run folder, without a model: takes the
run's lock, records ``running``, appends one history row per epoch (validation accuracy = ten
times the run's learning rate, so a test chooses each trial's curve), honours SIGTERM and the
stop file, and ends ``finished`` (or ``stopped``) with its best validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fer.run_folder import RunFolder  # noqa: E402
from fer.workers import acquire_lock  # noqa: E402

EPOCH_S = float(os.environ.get("FAKE_EPOCH_S", "0.3"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    folder = RunFolder(Path(parser.parse_args().run_dir))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    lock = acquire_lock(folder.path)
    if lock is None:
        return 2
    config = json.loads(folder.config_file.read_text())
    value = min(1.0, config["learning_rate"] * 10)
    folder.write_status(state="running", pid=os.getpid(), started=time.time(), ended=None)
    folder.history_file.write_text("epoch,accuracy,loss,val_accuracy,val_loss\n")
    state = "finished"
    for epoch in range(config["epochs"]):
        time.sleep(EPOCH_S)
        if stopping or folder.stop_requested() is not None:
            state = "stopped"
            break
        with open(folder.history_file, "a") as history:
            history.write(f"{epoch},0.5,1.0,{value:.4f},1.0\n")
        folder.write_status(epochs_done=epoch + 1, best_val_accuracy=value, best_epoch=1)
    folder.write_status(state=state, ended=time.time())
    os.close(lock)
    return 0 if state == "finished" else 3


if __name__ == "__main__":
    sys.exit(main())
