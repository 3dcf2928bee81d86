"""Turn bench/results/*.json into the Markdown table of the README's "Performance" section.

    python -m bench.report            # from the full runs (bench/results/<name>.json)
    python -m bench.report --quick    # from the --quick smoke runs (numbers mean nothing)

Missing results are listed as "not run" with the command that produces them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.common import RESULTS


def load(name: str, quick: bool) -> dict[str, Any] | None:
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "**missed**")


def rows(quick: bool) -> list[tuple[str, str, str, str]]:
    """(what, measured, target, status) rows."""
    out: list[tuple[str, str, str, str]] = []
    pipe = load("input_pipeline", quick)
    if pipe:
        out += input_pipeline_rows(pipe)
    step = load("train_step", quick)
    if step:
        for backend, models in step["variants"].items():
            for model, variants in models.items():
                text = "; ".join(f"{name}: {v['epoch_s']} s "
                                 f"({step['speedup_vs_baseline'][backend][model][name]}x)"
                                 for name, v in variants.items())
                out.append((f"2 {model} on {backend}: epoch time (448 steps of 64, extrapolated; variants "
                            "interleaved)", text, "apply what helps", "-"))
        if "not measured" in step.get("gpu", ""):
            out.append(("2 GPU: mixed precision, XLA, batch size, utilisation", "not measured: no GPU",
                        "measure", "not measured"))
    pred = load("predict_latency", quick)
    if pred:
        ours = pred["ours"]
        out.append(("3 bytes -> probabilities, 1 MP JPEG, p50 / p95 (ms)",
                    f"{ours['jpg']['p50_ms']} / {ours['jpg']['p95_ms']} (PNG {ours['png']['p50_ms']} / "
                    f"{ours['png']['p95_ms']})", "p50 <= 30 ms",
                    yes(pred["targets_met"].get("ours_jpg_p50_<=30ms"))))
        stages = ", ".join(f"{k} {v['p50_ms']}" for k, v in ours["jpg"]["stages"].items())
        out.append(("3 stage p50 (ms), JPEG", stages, "-", "-"))
        out.append(("3 predict_faces faces/s by batch size",
                    ", ".join(f"{k.replace('batch_', 'b')}: {v}"
                              for k, v in pred["predict_faces_faces_per_s"].items()), "-", "-"))
        ref = pred["reference_fer_pypi"]
        for key, value in ref.items():
            if isinstance(value, dict) and "p50_ms" in value:
                ratio = pred["ratios"].get(f"reference_{key.replace('/', '_')}_p50_over_ours")
                out.append((f"3 fer PyPI ({key}) p50 / p95 (ms)", f"{value['p50_ms']} / {value['p95_ms']} "
                            f"(ours {ratio}x faster)", "ours >= 2x faster",
                            yes(ratio >= 2 if ratio else None)))
    out += detector_rows(load("detectors", quick))
    dash = load("dashboard", quick)
    if dash:
        a, c = dash["apptest_runs_page"], dash["chromium"]
        out.append((f"4 Runs page, {dash['runs']} runs, AppTest script time first / rerun median (s)",
                    f"{a['first_render_s']} / {a['rerun_median_s']}", "<= 1.5 s",
                    yes(dash["targets_met"].get("runs_page_apptest_rerun_<=1.5s"))))
        if "runs_page_reload_s" in c:
            out.append(("4 Runs page in headless Chromium: first load / reload median / new session (s)",
                        f"{c['runs_page_first_load_s']} / {statistics.median(c['runs_page_reload_s']):.2f} / "
                        f"{c['runs_page_new_session_s']}", "<= 1.5 s",
                        yes(dash["targets_met"].get("runs_page_chromium_reload_<=1.5s"))))
            if "runs_page_in_app_navigation_s" in c:
                out.append(("4 Runs page in Chromium, in-app navigation from Train, median (s)",
                            f"{statistics.median(c['runs_page_in_app_navigation_s']):.2f}", "<= 1.5 s",
                            yes(dash["targets_met"].get("runs_page_chromium_in_app_<=1.5s"))))
            live = c["live_curves"]
            out.append(("4 live curves: epoch written -> drawn, median / max (s)",
                        f"{live['median_s']} / {live['max_s']} ({live['updates']} epochs)", "<= 2 s",
                        yes(dash["targets_met"].get("live_curves_max_<=2s"))))
            out.append(("4 Predict page open: 1st in server / 2nd / 3rd session (s)",
                        " / ".join(str(x) for x in c["predict_page_open_s"]), "TF imported once", "-"))
    mem = load("memory", quick)
    if mem:
        server = mem["server"]
        if "after_prediction" in server:
            out.append((f"5 Streamlit server, {server['runs']} runs + model: RSS / peak (MiB)",
                        f"{server['after_prediction']['rss_mb']} / "
                        f"{server['after_prediction']['peak_rss_mb']}",
                        "measure", "-"))
        for preset, w in mem["workers"].items():
            out.append((f"5 worker peak RSS, {preset} (MiB)", f"{w['peak_rss_mb']}", "measure", "-"))
        p = mem["prediction"]
        out.append((f"5 RSS growth over {p['requests']} predictions after warm-up (MiB)",
                    f"{p['growth_after_warmup_mb']} ({p['rss_mb_after_request']})", "no growth",
                    yes(abs(p["growth_after_warmup_mb"]) < 5)))
    out += export_rows(load("export_formats", quick))
    out += quick_trial_rows(load("quick_trial", quick))
    stops = load("stop_latency", quick)
    if stops:
        out.append((f"8 Stop -> run recorded as stopped, {len(stops['stops'])} stops "
                    f"({stops['data']}), median / max (s)",
                    f"{stops['stop_to_status_median_s']} / {stops['stop_to_status_max_s']}",
                    f"<= {stops['target_s']:g} s", yes(stops["stop_to_status_max_s"] <= stops["target_s"])))
    return out


def detector_rows(det: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Rows of bench.detectors: recall per group and bytes -> probabilities per detector."""
    if not det:
        return []
    recall = "; ".join(
        f"{group} {100 * row['blazeface']['recall']:.1f} / {100 * row['haar']['recall']:.1f}"
        for group, row in det["detection"].items() if row["faces"])
    blaze, haar = (det["speed"][name]["bytes_to_probabilities"] for name in ("blazeface", "haar"))
    return [
        (f"3b face recall (%), BlazeFace / Haar ({det['faces_from']}, {det['faces_per_group']} per group)",
         recall, "BlazeFace >= Haar in every group",
         yes(det["targets_met"].get("blazeface_recall_>=_haar_every_group"))),
        ("3b bytes -> probabilities, 1 MP JPEG, one face, p50 / p95 (ms): BlazeFace; Haar",
         f"{blaze['p50_ms']} / {blaze['p95_ms']}; {haar['p50_ms']} / {haar['p95_ms']}",
         "BlazeFace p50 <= 15 ms", yes(det["targets_met"].get("blazeface_p50_<=15ms"))),
    ]


def export_rows(exp: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Rows of bench.export_formats: each format checked against Keras, one-face latency per runtime."""
    if not exp:
        return []
    formats = exp["formats"]
    checked = "; ".join(f"{name} {row['max_abs_diff']:.1e} ({100 * row['agreement']:.1f}% same label)"
                        for name, row in formats.items())
    latency = "; ".join(f"{runtime} {row['p50_ms']}" for runtime, row in exp["single_face_latency"].items())
    return [
        (f"6 exports vs the Keras model, max abs. probability difference ({exp['faces']} faces)", checked,
         "every format verified", yes(all(row["verified"] for row in formats.values()))),
        ("6 one face, p50 (ms) per runtime", latency, "-", "-"),
    ]


def quick_trial_rows(trial: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Rows of bench.quick_trial: wall time and PrivateTest accuracy of each recorded run."""
    if not trial:
        return []
    out = []
    for run in trial["runs"]:
        loads = run.get("load_average_1min_while_training") or [0]
        out.append((f"7 quick trial {run['run']}: command -> evaluated run (s), PrivateTest accuracy",
                    f"{run['wall_s']} s, {100 * run['private_test_accuracy']:.1f}% (1-min load up to "
                    f"{max(loads):.1f})", trial["target"], yes(run.get("meets_target"))))
    return out


def input_pipeline_rows(pipe: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows of bench.input_pipeline: pipeline-only, per (backend, model) training rates, the GPU target."""
    out: list[tuple[str, str, str, str]] = []
    met, r = pipe["targets_met"], pipe["ratios"]
    for backend, row in pipe["pipeline_only"].items():
        c = row["candidates"]
        if "seeds_idg" not in c:
            continue
        out.append((f"1a pipeline-only images/s on {backend}: seeds ImageDataGenerator / ours (no model; "
                    "interleaved)",
                    f"{c['seeds_idg']['median_images_per_s']} / {c['ours']['median_images_per_s']}"
                    f" (ours = {r.get(f'{backend}_pipeline_ours_vs_seeds', 0):.1f}x)", ">= 3x seeds",
                    yes(met.get(f"{backend}_pipeline_ours_>=3x_seeds"))))
    names = ("model_bound", "ours_plain", "ours_preset_aug", "seeds_idg")
    for backend, models in pipe["training"].items():
        for model, row in models.items():
            c = row["candidates"]
            prefix = f"{backend}_{model}"
            rates = " / ".join(str(c[n]["median_images_per_s"]) if n in c else "-" for n in names)
            ratios = " / ".join(f"{c[n]['median_ratio_to_fastest']:.0%}" if n in c else "-" for n in names)
            fast = " / ".join(f"{c[n]['fast_mode_ratio_to_fastest']:.0%}" if c.get(n, {}).get(
                "fast_mode_ratio_to_fastest") else "-" for n in names)
            flags = [met.get(f"{prefix}_preset_aug_>=90%_model_bound"),
                     met.get(f"{prefix}_ours_plain_>=fastest_within_noise")]
            out.append((f"1b {model} on {backend}, training images/s: model-bound / ours plain / "
                        "ours + preset augmentation / seeds "
                        f"(median of {pipe['rounds']} interleaved rounds)",
                        f"{rates}; of the round's fastest: {ratios} (fast-mode steps: {fast}); preset aug = "
                        f"{r.get(f'{prefix}_ours_preset_aug_vs_model_bound', 0):.0%} of model-bound",
                        "aug >= 90% of model-bound; plain >= fastest - 5%",
                        "n/a" if None in flags else ("met" if all(flags) else "**missed**")))
    gpu = pipe.get("gpu_target")
    if gpu:
        out.append(("1c vgg_fer + preset augmentation on one H100, images/s",
                    str(gpu.get("images_per_s")) if gpu["measured"] else f"not measured: {gpu['why']}",
                    ">= 20,000", yes(gpu["met"]) if gpu["measured"] else "not measured"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    table = rows(args.quick)
    from bench.all import BENCHMARKS

    for name in BENCHMARKS:
        if load(name, args.quick) is None:
            table.append((name, f"not run: `python -m bench.{name}`", "", ""))
    print("| measurement | result | target | status |")
    print("|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
