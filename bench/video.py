"""Emotions over a video: frames analysed per second (``fer.video.analyse``: decode, BlazeFace,
crop, the default model) on a 1280x720 video of a real face moving across the picture.

    python -m bench.video           # a 20 s video sampled at 5 and 25 frames a second
    python -m bench.video --quick   # a 2 s video (smoke test)

The video is written with ``cv2.VideoWriter`` (mp4v) from scikit-image's astronaut (public domain);
decoding the frames that are not sampled is part of the cost, so frames/s is counted per sampled
frame and the video's own seconds per wall-clock second are given too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import log, temp_dir, write_result  # noqa: E402

SIZE, FILE_FPS = (1280, 720), 25


def write_clip(path: Path, seconds: float) -> Path:
    import cv2
    import numpy as np
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:260, 120:340]
    face = cv2.resize(face, (face.shape[1] * 2, face.shape[0] * 2))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FILE_FPS, SIZE)
    span = SIZE[0] - face.shape[1]
    for i in range(int(seconds * FILE_FPS)):
        frame = np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)
        x = int(abs((i * 8) % (2 * span) - span))
        frame[100:100 + face.shape[0], x:x + face.shape[1]] = face
        out.write(frame)
    out.release()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2 s video (smoke test)")
    args = parser.parse_args(argv)
    from fer.predict import Predictor
    from fer.video import analyse

    seconds = 2.0 if args.quick else 20.0
    clip = write_clip(temp_dir("video") / "clip.mp4", seconds)
    predictor = Predictor.load()
    analyse(clip, predictor, fps=1.0)  # warm: the model's first call traces it
    rates = {}
    for fps in (5.0, 25.0):
        result = analyse(clip, predictor, fps=fps)
        rates[f"sample_{fps:g}_per_s"] = {
            "sampled_frames": result.sampled, "faces": result.faces, "seconds": round(result.seconds, 2),
            "frames_per_s": round(result.sampled / result.seconds, 1),
            "video_s_per_s": round(seconds / result.seconds, 2)}
        log(f"{fps:g}/s: {rates[f'sample_{fps:g}_per_s']}")
    write_result("video", {"quick": args.quick, "video": f"{SIZE[0]}x{SIZE[1]} mp4v, {FILE_FPS} fps, "
                           f"{seconds:g} s, one real face moving", "model": str(predictor.path), **rates})
    return 0


if __name__ == "__main__":
    sys.exit(main())
