"""The SSVD-O calibration experiment of docs/ssvdo.md ("Calibration experiment"), seed 0.

Part a: the adult experience alone (``stream.domains: [adult]``, the base model's own domain):
SSVD-O v1 and v2 (top subspace) and LoRA at each learning rate of ``--lrs-a``. The damage is
the adult test WER after the experience minus the base's (row 1 - row 0).

Part b: the 3-experience stream (adult -> child -> accent): SSVD-O v2 top, SSVD-O v2 tail and
LoRA at every learning rate of ``--lrs-b``; per arm the learning rate with the lowest mean
*valid* WER over the domains after the last experience is selected, and its test WER matrix is
reported.

Every run is an ordinary ``cl-ssvdo run`` (``experiments.runner.run_experiment``) of
``ssvdo.yaml`` / ``lora.yaml`` on the base of ``--base`` (default ``calibration.yaml``), so
it lands in the MLflow store with its per-layer diagnostics, and a finished run is reused.
Results go to ``--out`` (JSON) and are printed as Markdown tables.

Usage::

    .venv/bin/python scripts/calibration_experiment.py --dry-run          # list the runs
    .venv/bin/python scripts/calibration_experiment.py --part a --lrs-a 5e-3
    .venv/bin/python scripts/calibration_experiment.py --part b
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = (1e-3, 2e-3, 5e-3, 1e-2)
# arm name -> (shipped config, adapter overrides)
ARMS_A = {
    "ssvdo-v1": ("ssvdo", {"parameterisation": "v1", "subspace": "top"}),
    "ssvdo-v2": ("ssvdo", {"parameterisation": "v2", "subspace": "top"}),
    "lora": ("lora", {}),
}
ARMS_B = {
    "ssvdo-v2-top": ("ssvdo", {"parameterisation": "v2", "subspace": "top"}),
    "ssvdo-v2-tail": ("ssvdo", {"parameterisation": "v2", "subspace": "tail"}),
    "lora": ("lora", {}),
}


def run_config(base: str, arm: tuple[str, dict[str, Any]], lr: float, part: str, steps: int):
    """The full config of one run: the arm's shipped config on the base's model/stream."""
    from experiments.config import load_config

    shipped, adapter = arm
    model = load_config(base)["model"]
    overrides: dict[str, Any] = {
        "model": model,
        "train.max_steps": steps,
        "train.optimizer.lr": lr,
        "tracking.experiment": "calibration",
    }
    for key, value in adapter.items():
        overrides[f"strategy.adapter.{key}"] = value
    if part == "a":
        overrides["stream.domains"] = ["adult"]
    cfg = load_config(shipped, overrides)
    return cfg


def valid_wer(run_dir: Path, cfg: dict[str, Any], after: int) -> dict[str, float]:
    """WER per domain on the valid split of the model after ``after`` experiences."""
    from cl_ssvdo.asr import evaluate_model
    from experiments.export import export_run
    from experiments.prepare import _manifest_data, load_base_model, prepare_stream, stream_domains

    info = prepare_stream(cfg, progress=False)
    with tempfile.TemporaryDirectory(prefix="calib-") as tmp:
        folder = export_run(run_dir, Path(tmp) / "model", after=after).folder
        model, tokenizer = load_base_model(folder, "cpu")
        out = {}
        for domain in stream_domains(cfg, info):
            data = _manifest_data(info, [domain], "valid", cfg["stream"].get("max_utterances"))
            report = evaluate_model(
                model, tokenizer, data, batch_size=cfg["train"]["eval_batch_size"], device="cpu"
            )
            out[domain] = float(report.wer)
    return out


def run_one(name: str, cfg: dict[str, Any], part: str) -> dict[str, Any]:
    from experiments.runner import run_experiment

    result = run_experiment(cfg, 0, run_name=f"calib-{part}-{name}", progress=False)
    row = {
        "name": name,
        "lr": cfg["train"]["optimizer"]["lr"],
        "run_dir": str(result.run_dir),
        "domains": list(result.domains),
        "wer": [list(map(float, r)) for r in result.wer],
        "summary": {
            k: result.summary.get(k) for k in ("awer", "bwt", "forgetting_mean", "learning_mean")
        },
    }
    if part == "b":
        row["valid_after_last"] = valid_wer(Path(result.run_dir), cfg, len(result.domains))
    return row


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def report_a(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| arm | lr | adult test WER base | after adult | damage (points) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        before, after = r["wer"][0][0], r["wer"][1][0]
        lines.append(
            f"| {r['name']} | {r['lr']:g} | {_fmt(before)} | {_fmt(after)} | {after - before:+.1f} |"
        )
    return "\n".join(lines)


def report_b(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| arm | lr | mean valid WER after last | AWER | BWT | adult damage after adult |",
        "|---|---|---|---|---|---|",
    ]
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        mean_valid = sum(r["valid_after_last"].values()) / len(r["valid_after_last"])
        r["mean_valid"] = mean_valid
        arm = r["name"].rsplit("@", 1)[0]
        if arm not in best or mean_valid < best[arm]["mean_valid"]:
            best[arm] = r
        s = r["summary"]
        lines.append(
            f"| {arm} | {r['lr']:g} | {mean_valid:.1f} | {_fmt(s.get('awer'))} | {_fmt(s.get('bwt'))} "
            f"| {r['wer'][1][0] - r['wer'][0][0]:+.1f} |"
        )
    for arm, r in best.items():
        labels = ["base"] + [f"after {d}" for d in r["domains"]]
        lines += ["", f"{arm} at lr {r['lr']:g} (selected on valid): test WER (%)", ""]
        lines.append("| trained up to | " + " | ".join(r["domains"]) + " |")
        lines.append("|---" * (len(r["domains"]) + 1) + "|")
        for label, row in zip(labels, r["wer"], strict=True):
            lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--base", default="calibration", help="config giving model and stream")
    parser.add_argument("--lrs-a", type=float, nargs="+", default=list(GRID))
    parser.add_argument("--lrs-b", type=float, nargs="+", default=list(GRID))
    parser.add_argument("--arms-a", nargs="+", default=list(ARMS_A), choices=list(ARMS_A))
    parser.add_argument("--arms-b", nargs="+", default=list(ARMS_B), choices=list(ARMS_B))
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per experience")
    parser.add_argument("--out", default="outputs/calibration.json")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    parser.add_argument(
        "--report", nargs="+", metavar="JSON", help="only print the tables of these result files"
    )
    args = parser.parse_args(argv)
    if args.report:
        merged: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for path in args.report:
            for part, rows in json.loads(Path(path).read_text()).items():
                merged[part] += rows
        return _print(merged)

    plan = []
    if args.part in ("a", "all"):
        plan += [
            ("a", f"{arm}@{lr:g}", ARMS_A[arm], lr) for arm in args.arms_a for lr in args.lrs_a
        ]
    if args.part in ("b", "all"):
        plan += [
            ("b", f"{arm}@{lr:g}", ARMS_B[arm], lr) for arm in args.arms_b for lr in args.lrs_b
        ]
    configs = [
        (part, name, run_config(args.base, arm, lr, part, args.steps))
        for part, name, arm, lr in plan
    ]
    for part, name, _ in configs:
        print(f"part {part}: {name}")
    if args.dry_run:
        return 0
    out = Path(args.out)
    results: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    if out.is_file():
        results.update(json.loads(out.read_text()))
    done = {(part, r["name"]) for part in results for r in results[part]}
    for part, name, cfg in configs:
        if (part, name) in done:
            continue
        print(f"running part {part}: {name}", flush=True)
        results[part].append(run_one(name, cfg, part))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return _print(results)


def report_moved(rows: Sequence[dict[str, Any]]) -> str:
    """Per run, from its budget table: the mean over layers of ||W_end - W_0|| / ||W_0|| after
    the first and the last experience, and the largest inner / outer angle in experience 1."""
    lines = [
        "| run | weight change after exp 1 | after last | max inner angle exp 1 (deg) "
        "| max outer angle exp 1 (deg) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        state = json.loads((Path(r["run_dir"]) / "state.json").read_text())
        table = state.get("budget_rows") or []
        last = max((row["experience"] for row in table), default=0)

        def pick(exp: int, key: str, table=table) -> list[float]:
            return [row[key] for row in table if row["experience"] == exp and key in row]

        def mean(xs: list[float]) -> float:
            return sum(xs) / len(xs) if xs else math.nan

        def deg(xs: list[float]) -> str:
            return f"{math.degrees(max(xs)):.1f}" if xs else "-"

        lines.append(
            f"| {r['name']} | {mean(pick(1, 'weight_change_total')):.3f} "
            f"| {mean(pick(last, 'weight_change_total')):.3f} | {deg(pick(1, 'inner_angle'))} "
            f"| {deg(pick(1, 'outer_angle_max'))} |"
        )
    return "\n".join(lines)


def _print(results: dict[str, list[dict[str, Any]]]) -> int:
    if results["a"]:
        print("\nPart a: the adult experience alone\n\n" + report_a(results["a"]))
    if results["b"]:
        print("\nPart b: 3 experiences\n\n" + report_b(results["b"]))
    rows = results["a"] + results["b"]
    if rows:
        print("\nWhat moved (mean over the target layers)\n\n" + report_moved(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
