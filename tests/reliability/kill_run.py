"""Runs one config in a child process and SIGKILLs it at a chosen point (test helper).

``python -m tests.reliability.kill_run CONFIG_JSON URI POINT`` where POINT is
``train`` (second training iteration of experience 2), ``eval`` (evaluation after experience
2, half way) or ``log`` (while writing a metric line after experience 2: half a line on disk).
Exits by SIGKILL at that point; exit status 0 means the point was never reached.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(config_path: str, uri: str, point: str) -> int:
    torch.set_num_threads(1)
    from experiments.mlflow_logger import MLflowLogger
    from experiments.recorder import RunRecorder
    from experiments.runner import run_experiment
    from strategies.metrics.wer import WERMatrix

    state = {"exp": 0, "iters": 0, "evals": 0}
    before_exp = MLflowLogger.before_training_exp
    after_iter = MLflowLogger.after_training_iteration
    after_eval_iter = WERMatrix.after_eval_iteration
    log_metrics = RunRecorder.log_metrics

    def on_exp(self, strategy, *a, **k):
        state["exp"] += 1
        state["iters"] = 0
        return before_exp(self, strategy, *a, **k)

    def on_iter(self, strategy, *a, **k):
        after_iter(self, strategy, *a, **k)
        state["iters"] += 1
        if point == "train" and state["exp"] == 2 and state["iters"] == 2:
            _die()

    def on_eval_iter(self, strategy, *a, **k):
        after_eval_iter(self, strategy, *a, **k)
        if point == "eval" and state["exp"] == 2 and self.force_row == 2:
            state["evals"] += 1
            if state["evals"] == 2:
                _die()

    def on_log(self, metrics, step=0):
        if point == "log" and step == 2 and "wer/adult" in metrics and self.dir is not None:
            with self.dir.metrics_file.open("a") as fh:
                fh.write('{"key": "wer/adult", "val')
                fh.flush()
            _die()
        return log_metrics(self, metrics, step)

    MLflowLogger.before_training_exp = on_exp
    MLflowLogger.after_training_iteration = on_iter
    WERMatrix.after_eval_iteration = on_eval_iter
    RunRecorder.log_metrics = on_log
    with open(config_path) as fh:
        config = json.load(fh)
    run_experiment(config, seed=0, tracking_uri=uri, progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
