"""End to end on the real pieces: the tiny synthetic stream, the pretrained ``ci`` model, the
CTC template with real plugins, and a fresh SQLite MLflow store read back with MlflowClient."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from cl_ssvdo import metrics
from experiments.checkpoint import latest_checkpoint
from experiments.cli import EXIT_TRACKING, main
from experiments.compare import compare_runs
from experiments.config import ConfigError
from experiments.report import report_run_dir
from experiments.run_dir import RunDir
from experiments.runner import HorizonWarning, run_dir_for, run_experiment
from experiments.sweep import run_sweep, sync_folder
from experiments.tracking import TrackingUnreachableError
from tests.experiments.conftest import TINY_OVERRIDES

pytestmark = pytest.mark.slow
TINY_TRAIN = {k: v for k, v in TINY_OVERRIDES.items() if k.startswith("train.")}


def _artifact_json(client: MlflowClient, run_id: str, path: str, tmp: Path):
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp))).read_text())


def test_run_writes_everything_to_a_fresh_sqlite_store(
    tiny_config, store_uri, tmp_path, monkeypatch
) -> None:
    from strategies.adapters.ssvdo import SSVDOPlugin

    built = []
    init = SSVDOPlugin.__init__
    monkeypatch.setattr(
        SSVDOPlugin, "__init__", lambda self, *a, **k: built.append(self) or init(self, *a, **k)
    )
    cfg = tiny_config(
        "ssvdo", {"strategy.adapter.schedule": {"constant": {"inner_ratio": 0.25, "outer_rank": 4}}}
    )
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    assert len(built) == 1  # the plugin that checked the config is the one that trained
    domains = result.domains
    assert domains == ["adult", "child", "accent"] and len(result.wer) == 4

    client = MlflowClient(store_uri)
    run = client.get_run(result.run_id)
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "cl-ssvdo" and run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(
        (Path(store_uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    )

    params = run.data.params
    assert params["config.strategy.adapter.method"] == "ssvdo" and params["seed"] == "0"
    assert {"git.commit", "version.torch", "version.avalanche-lib", "version.speechbrain"} <= set(
        params
    )

    for domain in domains:  # per-experience WER/CER per domain as step metrics (0 = base)
        wer = client.get_metric_history(run.info.run_id, f"wer/{domain}")
        assert sorted(m.step for m in wer) == [0, 1, 2, 3]
        assert {m.step: m.value for m in wer} == {
            i: result.wer[i][domains.index(domain)] for i in range(4)
        }
        assert len(client.get_metric_history(run.info.run_id, f"cer/{domain}")) == 4
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(losses) == 3 and all(math.isfinite(m.value) and m.value > 0 for m in losses)
    trainable = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "trainable_params")
    }
    assert set(trainable) == {1, 2, 3} and len(set(trainable.values())) == 1

    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    for stem in ("wer_matrix", "cer_matrix", "forgetting_matrix"):
        assert {f"{stem}.csv", f"{stem}.json", f"{stem}.png"} <= arts
    assert {
        "config.yaml",
        "budget_table.csv",
        "budget_table.json",
        "summary.json",
        "tables",
    } <= arts
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "tables/wer_matrix_long.json", "type": "table"} in logged
    table = _artifact_json(client, run.info.run_id, "tables/wer_matrix_long.json", tmp_path)
    assert table["columns"] == ["train_exp", "train_domain", "eval_domain", "wer", "cer"]
    assert len(table["data"]) == 12

    # BWT and forgetting recomputed from the logged matrix equal the logged metrics.
    matrix = _artifact_json(client, run.info.run_id, "wer_matrix.json", tmp_path)
    recomputed = metrics.summarize(np.asarray(matrix["values"], dtype=float))
    logged_metrics = run.data.metrics
    for key in ("bwt", "forgetting_mean", "forgetting_max", "awer", "learning_mean"):
        assert logged_metrics[key] == pytest.approx(recomputed[key], abs=1e-9), key
    assert {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "learning")
    } == pytest.approx(dict(enumerate(recomputed["learning"], start=1)))
    forgetting = _artifact_json(client, run.info.run_id, "forgetting_matrix.json", tmp_path)
    expected = metrics.forgetting_matrix(matrix["values"])
    np.testing.assert_allclose(
        np.array([[np.nan if v is None else v for v in row] for row in forgetting["values"]]),
        expected,
        equal_nan=True,
    )

    # The per-layer budget table adds up to the logged trainable parameters.
    budget = _artifact_json(client, run.info.run_id, "budget_table.json", tmp_path)
    per_exp = {}
    for row in budget:
        per_exp[row["experience"]] = per_exp.get(row["experience"], 0) + row["trainable"]
        assert row["k"] == 24 and row["l"] in (0, 4)
    assert per_exp == {k: int(v) for k, v in trainable.items()}

    # A finished run is not recomputed; the report reads the folder.
    again = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    assert again.run_id == result.run_id and again.wer == result.wer
    assert "forgetting_max" in report_run_dir(result.run_dir)


def test_killed_run_resumes_without_losing_work(tiny_config, store_uri, monkeypatch) -> None:
    from strategies.template import CTCTemplate

    cfg = tiny_config("replay", {"strategy.plugins": [{"name": "replay", "mem_size": 6}]})
    original = CTCTemplate.train
    calls: list[int] = []

    def train_then_die(self, experiences, *args, **kwargs):
        calls.append(int(experiences.current_experience))
        if len(calls) == 3:
            raise RuntimeError("simulated kill during the third experience")
        return original(self, experiences, *args, **kwargs)

    monkeypatch.setattr(CTCTemplate, "train", train_then_die)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    folder = RunDir(run_dir_for(cfg, 0))
    state = folder.state()
    assert state["status"] == "FAILED" and state["completed"] == 2 and len(state["wer"]) == 3
    assert latest_checkpoint(folder.checkpoints)[0] == 2
    rows_before = state["wer"]

    calls.clear()
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    assert calls == [2]  # only the unfinished experience is trained again
    assert result.wer[:3] == rows_before and len(result.wer) == 4
    assert result.run_id == state["mlflow"]["run_id"]  # the same MLflow run continues
    client = MlflowClient(store_uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(result.run_id, "wer/adult"))
    assert steps == [0, 1, 2, 3]


def test_sweep_is_one_parent_with_children_in_one_experiment(
    tiny_config, store_uri, tmp_path
) -> None:
    cfg = tiny_config(
        "demo",
        {
            "sweep.budgets": [8000],
            "sweep.overrides": TINY_TRAIN,
            "tracking.experiment": "sweep-test",
        },
    )
    result = run_sweep(cfg, tracking_uri=store_uri, progress=False)
    client = MlflowClient(store_uri)
    parent = client.get_run(result.parent_run_id)
    exp_id = parent.info.experiment_id
    assert client.get_experiment(exp_id).name == "sweep-test"
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert sorted(r.info.run_name for r in children) == ["lora-b8000-s0", "ssvdo-b8000-s0"]
    assert len(client.search_runs([exp_id])) == 3
    assert all(r.info.status == "FINISHED" for r in children)
    # the UI reads right: runs table first, each run its own description and adapter params
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    by_name = {r.info.run_name: r for r in children}
    notes = {n: r.data.tags["mlflow.note.content"] for n, r in by_name.items()}
    assert notes["ssvdo-b8000-s0"].startswith("SSVD-O on the feed-forward layers")
    assert notes["lora-b8000-s0"].startswith("LoRA (peft)")
    assert not any("Naive sequential" in n for n in notes.values())
    for name, method in (("ssvdo-b8000-s0", "ssvdo"), ("lora-b8000-s0", "lora")):
        params = by_name[name].data.params
        assert params["adapter.method"] == method
        assert 0 < int(params["adapter.budget"]) <= 8000
        assert 0 < float(params["adapter.inner_share"]) <= 1
    assert parent.data.params["sweep.budgets"] == "[8000]"
    arts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {
        "comparison.csv",
        "comparison.md",
        "learning_vs_forgetting.png",
        "wer_vs_params.png",
    } <= arts
    assert "tables" in arts

    # budgets were matched: LoRA's count does not exceed SSVD-O's, and both are within budget
    counts = {r.info.run_name: r.data.metrics["trainable_params_max"] for r in children}
    assert counts["lora-b8000-s0"] <= counts["ssvdo-b8000-s0"] <= 8000

    compared = compare_runs(store_uri, parent_run_id=result.parent_run_id, out_dir=tmp_path / "cmp")
    assert sorted(compared.frame.run) == sorted(counts)
    for row in compared.frame.to_dict("records"):
        assert row["awer"] == pytest.approx(client.get_run(row["run_id"]).data.metrics["awer"])
    assert (tmp_path / "cmp" / "learning_vs_forgetting.png").is_file()


def test_unreachable_server_fails_up_front_and_offline_results_sync(
    tiny_config, store_uri, closed_port_uri, tmp_path, capsys
) -> None:
    cfg = tiny_config("naive")
    with pytest.raises(TrackingUnreachableError):
        run_experiment(cfg, seed=0, tracking_uri=closed_port_uri, progress=False)
    assert not run_dir_for(cfg, 0).exists()  # failed before any work

    cfg_file = tmp_path / "naive.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    assert (
        main(["--quiet", "run", str(cfg_file), "--tracking-uri", closed_port_uri]) == EXIT_TRACKING
    )
    assert "unreachable" in capsys.readouterr().err

    result = run_experiment(cfg, seed=0, tracking_uri=closed_port_uri, offline=True, progress=False)
    folder = RunDir(result.run_dir)
    assert folder.state()["status"] == "FINISHED" and not result.synced
    assert (folder.artifacts / "wer_matrix.json").is_file()
    assert main(["sync", str(result.run_dir), "--tracking-uri", store_uri]) == 0
    run_id = folder.state()["mlflow"]["run_id"]
    run = MlflowClient(store_uri).get_run(run_id)
    local = {m["key"]: m["value"] for m in folder.metrics()}
    assert run.data.metrics["awer"] == pytest.approx(local["awer"])
    assert run.data.params["config.strategy.name"] == "naive"


def test_joint_and_single_task_references_give_im_and_fwt(tiny_config, store_uri) -> None:
    two = {"stream.domains": ["adult", "child"]}  # two experiences keep this test short
    joint = run_experiment(tiny_config("joint", two), 0, tracking_uri=store_uri, progress=False)
    single = run_experiment(
        tiny_config("single_task", two), 0, tracking_uri=store_uri, progress=False
    )
    assert len(joint.wer) == len(single.wer) == 3
    naive = run_experiment(tiny_config("naive", two), 0, tracking_uri=store_uri, progress=False)
    joint_ref = [joint.wer[c + 1][c] for c in range(2)]
    single_ref = [single.wer[c + 1][c] for c in range(2)]
    expected = metrics.summarize(np.asarray(naive.wer), joint=joint_ref, single=single_ref)
    logged = MlflowClient(store_uri).get_run(naive.run_id).data
    assert logged.metrics["im_mean"] == pytest.approx(expected["im_mean"])
    assert logged.metrics["fwt_mean"] == pytest.approx(expected["fwt_mean"])
    assert logged.params["reference.joint"] == str(joint.run_dir)


def test_eval_split_valid_scores_the_valid_utterances_and_never_reads_test(
    tiny_config, store_uri, tiny_stream
) -> None:
    """Learning-rate selection (docs/protocol.md) scores on valid: every matrix row then holds
    the valid utterances of each domain, and no test utterance is decoded."""
    from cl_ssvdo.data import read_manifest

    two = {"stream.domains": ["adult", "child"], "stream.eval_split": "valid"}
    result = run_experiment(tiny_config("naive", two), 0, tracking_uri=store_uri, progress=False)
    ids = {
        split: {
            (d, r.ID)
            for d in ("adult", "child")
            for r in read_manifest(tiny_stream.manifest(d, split))
        }
        for split in ("valid", "test")
    }
    for row in range(3):
        lines = (result.run_dir / "artifacts" / "hypotheses" / f"row{row}.tsv").read_text()
        scored = {tuple(line.split("\t")[:2]) for line in lines.splitlines()[1:]}
        assert scored and scored <= ids["valid"] and not scored & ids["test"]
    assert len(result.wer) == 3 and all(len(r) == 2 for r in result.wer)


def test_schedule_that_fits_no_layer_fails_before_training(tiny_config, store_uri) -> None:
    schedule = {
        "groups": {"up": "*ffn.0", "attn": "*nothing*"},
        "constant": {"up": {"inner_ratio": 0.1}, "attn": {"inner_ratio": 0.1}},
    }
    cfg = tiny_config("ssvdo", {"strategy.adapter.schedule": schedule})
    with pytest.raises(ConfigError) as info:
        run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    assert info.value.field == "strategy.adapter" and "attn" in str(info.value)
    assert "wer" not in RunDir(run_dir_for(cfg, 0)).state()  # nothing was evaluated or trained


def test_sync_of_a_sweep_folder_rebuilds_parent_and_children(tiny_config, store_uri) -> None:
    cfg = tiny_config(
        "demo",
        {
            "sweep.configs": ["ssvdo.yaml"],
            "sweep.budgets": [6000],
            "sweep.overrides": TINY_TRAIN,
            "tracking.offline": True,
        },
    )
    result = run_sweep(cfg, progress=False)
    assert result.parent_run_id is None and len(result.children) == 1
    parent_id = sync_folder(result.folder, store_uri)
    client = MlflowClient(store_uri)
    kids = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert [k.info.run_name for k in kids] == ["ssvdo-b6000-s0"]
    assert sync_folder(result.folder, store_uri) == parent_id  # idempotent


def test_each_experience_logs_its_steps_and_warns_when_the_epochs_run_out_first(
    tiny_config, store_uri
) -> None:
    """8 utterances a domain at batch 4 are 2 batches an epoch: 1 epoch stops at 2 of 5 steps
    (a HorizonWarning naming the experience and both settings), 3 epochs reach the 5."""
    two = {"stream.domains": ["adult", "child"], "train.max_steps": 5}
    with pytest.warns(HorizonWarning) as caught:
        short = run_experiment(tiny_config("naive", {**two, "train.epochs": 1}), 0,
                               tracking_uri=store_uri, progress=False)  # fmt: skip
    messages = [str(w.message) for w in caught if w.category is HorizonWarning]
    assert len(messages) == 2 and "experience 2 (child) trained 2 optimiser steps" in messages[1]
    assert "train.max_steps = 5: train.epochs = 1 ran out first" in messages[1]

    with warnings.catch_warnings():
        warnings.simplefilter("error", HorizonWarning)
        full = run_experiment(tiny_config("naive", {**two, "train.epochs": 3}), 0,
                              tracking_uri=store_uri, progress=False)  # fmt: skip
    client = MlflowClient(store_uri)
    for result, steps in ((short, 2), (full, 5)):
        history = client.get_metric_history(result.run_id, "train/steps")
        assert sorted((m.step, m.value) for m in history) == [(1, steps), (2, steps)]
