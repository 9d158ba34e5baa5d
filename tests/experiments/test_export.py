"""``cl-ssvdo export``: a run's merged model after an experience as a SpeechBrain folder that
stock ``EncoderASR`` loads and that transcribes like the in-memory model; logged to MLflow as a
pyfunc model that transcribes audio files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from speechbrain.inference.ASR import EncoderASR
from torch import nn

from cl_ssvdo import inject_ssvdo, merge_ssvdo
from cl_ssvdo.asr import greedy_decode, load_pretrained
from cl_ssvdo.data import read_manifest
from experiments.checkpoint import model_state_path
from experiments.cli import main
from experiments.export import EXPORT_INFO, export_model, export_run
from experiments.run_dir import RunDir


def _adapted(pretrained_ci: Path):
    """The ci model after a real SSVD-O experience: inject, move the adapter, merge."""
    model, tokenizer, _ = load_pretrained(pretrained_ci)
    inject_ssvdo(model, ["*ffn.0"], inner_ratio=0.5, outer_rank=2)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    merge_ssvdo(model)
    return model.eval(), tokenizer


def _fake_run(tmp_path: Path, pretrained_ci: Path, model: nn.Module, domains) -> Path:
    run = RunDir(tmp_path / "run").create()
    (run.path / "config.yaml").write_text("name: ssvdo\n")
    run.update_state(
        mode="sequential",
        completed=1,
        domains=list(domains),
        base_model=str(pretrained_ci),
        run_name="ssvdo-s0",
    )
    torch.save(model.state_dict(), model_state_path(run.checkpoints, 1))
    return run.path


@pytest.fixture
def adapted_run(pretrained_ci: Path, tiny_stream, tmp_path: Path):
    model, tokenizer = _adapted(pretrained_ci)
    return _fake_run(tmp_path, pretrained_ci, model, tiny_stream.domains), model, tokenizer


def test_export_loads_in_stock_encoder_asr_and_transcribes_alike(
    adapted_run, pretrained_ci: Path, tiny_stream, tmp_path: Path, capsys
) -> None:
    run_dir, model, tokenizer = adapted_run
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), str(out), "--after", "1"]) == 0
    assert "experience 1 (adult)" in capsys.readouterr().out
    asr = EncoderASR.from_hparams(source=str(out), savedir=str(out))  # stock SpeechBrain
    base, _, _ = load_pretrained(pretrained_ci)
    exported = asr.mods.encoder.model.state_dict()
    assert all(torch.equal(exported[k], v) for k, v in model.state_dict().items())
    base_state = base.state_dict()
    changed = [k for k, v in exported.items() if not torch.equal(v, base_state[k])]
    assert changed and all("ffn.0." in k for k in changed)  # what SSVD-O adapted, no more
    rows = read_manifest(tiny_stream.manifest("child", "test"))[:3]
    for row in rows:
        said = asr.transcribe_file(str(tiny_stream.root / row.wav))
        wav = asr.load_audio(str(tiny_stream.root / row.wav))
        with torch.no_grad():
            log_probs, lens = model(wav.unsqueeze(0), torch.ones(1))
        assert greedy_decode(log_probs, lens, tokenizer) == [" ".join(said.split())]
    assert '"trained_domains": [\n    "adult"\n  ]' in (out / EXPORT_INFO).read_text()


def test_export_after_base_and_out_of_range(adapted_run, tmp_path: Path, capsys) -> None:
    run_dir, _, _ = adapted_run
    result = export_run(run_dir, tmp_path / "base", after=0)
    assert result.experience == 0 and result.domain == "base"
    assert main(["export", str(run_dir), str(tmp_path / "x"), "--after", "3"]) == 1
    assert "--after 3 is out of range" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "x")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_export_names_unsupported_model_kinds(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="export_whisper_state"):
        export_model(nn.Linear(2, 2), None, tmp_path)
    run = RunDir(tmp_path / "whisper-run").create()
    (run.path / "config.yaml").write_text("name: whisper_ctc\nmodel: {kind: whisper-ctc}\n")
    run.update_state(mode="sequential", completed=1, domains=["adult"], base_model="x")
    with pytest.raises(NotImplementedError, match="model.kind: whisper-ctc"):
        export_run(run.path, tmp_path / "out")


def test_export_logs_a_pyfunc_that_transcribes(
    adapted_run, store_uri: str, tiny_stream, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking import MlflowClient

    run_dir, _, _ = adapted_run
    client = MlflowClient(store_uri)
    experiment = client.create_experiment(
        "export-test", artifact_location=(tmp_path / "mlartifacts").as_uri()
    )
    run_id = client.create_run(experiment).info.run_id
    RunDir(run_dir).update_state(mlflow={"run_id": run_id, "tracking_uri": store_uri})
    result = export_run(run_dir, tmp_path / "exported", after=1, mlflow=True)
    assert result.model_uri
    wavs = [
        str(tiny_stream.root / r.wav)
        for r in read_manifest(tiny_stream.manifest("child", "test"))[:2]
    ]
    mlflow.set_tracking_uri(store_uri)
    served = mlflow.pyfunc.load_model(result.model_uri).predict(pd.DataFrame({"wav": wavs}))
    asr = EncoderASR.from_hparams(source=str(result.folder), savedir=str(result.folder))
    assert list(served) == [asr.transcribe_file(w) for w in wavs]
    names = [a.path for a in client.list_artifacts(run_id)]
    assert names == [] or all(isinstance(n, str) for n in names)


def test_a_run_with_log_models_logs_each_experience_as_an_mlflow_model(
    tiny_config, store_uri: str, tiny_stream
) -> None:
    """``tracking.log_models``: after every experience the merged model is exported under the
    run folder and logged to the run as a pyfunc model that transcribes like the folder."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from experiments.runner import run_experiment

    cfg = tiny_config("naive", {"stream.domains": ["adult", "child"], "tracking.log_models": True})
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    tags = MlflowClient(store_uri).get_run(result.run_id).data.tags
    assert {"model_after_exp1", "model_after_exp2"} <= set(tags)
    folder = result.run_dir / "exports" / "after_exp2"
    wav = str(tiny_stream.root / read_manifest(tiny_stream.manifest("child", "test"))[0].wav)
    mlflow.set_tracking_uri(store_uri)
    served = mlflow.pyfunc.load_model(tags["model_after_exp2"]).predict(
        pd.DataFrame({"wav": [wav]})
    )
    asr = EncoderASR.from_hparams(source=str(folder), savedir=str(folder))
    assert list(served) == [asr.transcribe_file(wav)]


def test_save_adapters_keeps_each_experience_unmerged_in_peft_format(
    tiny_config, store_uri: str, tmp_path: Path
) -> None:
    """``train.save_adapters``: the SSVD-O adapter of experience 2, loaded by stock peft onto
    the model after experience 1 and merged, gives the model after experience 2; export copies
    it next to the merged folder."""
    from peft import PeftModel

    from experiments.checkpoint import load_model_state
    from experiments.runner import run_experiment

    cfg = tiny_config(
        "ssvdo",
        {
            "stream.domains": ["adult", "child"],
            "train.save_adapters": True,
            "strategy.adapter.schedule": {"constant": {"inner_ratio": 0.25, "outer_rank": 4}},
        },
    )
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    assert sorted(p.name for p in (result.run_dir / "adapters").iterdir()) == ["exp_001", "exp_002"]
    out = export_run(result.run_dir, tmp_path / "shipped", after=2).folder
    assert (out / "adapter" / "adapter_config.json").is_file()

    model, _, _ = load_pretrained(cfg["model"]["pretrained"])
    model.load_state_dict(load_model_state(result.run_dir / "checkpoints", 1))
    merged = PeftModel.from_pretrained(model, out / "adapter").merge_and_unload()
    after = load_model_state(result.run_dir / "checkpoints", 2)
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, after[name], rtol=1e-5, atol=1e-5, msg=name)


def test_save_adapters_keeps_lora_unmerged_in_peft_format(tiny_config, store_uri: str) -> None:
    """The same for LoRA: stock peft loads experience 1's adapter onto the base and merging
    gives the model after experience 1."""
    from peft import PeftModel

    from experiments.checkpoint import load_model_state
    from experiments.runner import run_experiment

    cfg = tiny_config("lora", {"stream.domains": ["adult"], "train.save_adapters": True})
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    model, _, _ = load_pretrained(cfg["model"]["pretrained"])
    model.load_state_dict(load_model_state(result.run_dir / "checkpoints", 0))
    adapter = result.run_dir / "adapters" / "exp_001"
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    after = load_model_state(result.run_dir / "checkpoints", 1)
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, after[name], rtol=1e-5, atol=1e-5, msg=name)


def test_a_run_without_model_states_says_which_setting_keeps_them(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "no-states").create()
    (run.path / "config.yaml").write_text("name: naive\nmodel: {kind: ctc}\n")
    run.update_state(mode="sequential", completed=2, domains=["adult", "child"], base_model="x")
    with pytest.raises(FileNotFoundError, match="train.checkpoint: false"):
        export_run(run.path, tmp_path / "out", after=2)
