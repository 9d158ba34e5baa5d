"""``cl-ssvdo export RUN [--after EXPERIENCE] DIR``: ship the adapted model of a run.

After every experience a continual run keeps the plain (adapters merged) model state as a
state dict (``RUN/checkpoints/model_exp_<i>.pt``, ``i = 0`` the base; read with
``weights_only=True`` by :func:`experiments.checkpoint.load_model_state`). Export rebuilds the
base architecture from the run's base folder, loads that state and writes a SpeechBrain
pretrained folder with the same interface as the base::

    from speechbrain.inference.ASR import EncoderASR
    asr = EncoderASR.from_hparams(source=DIR, savedir=DIR)
    asr.transcribe_file("clip.wav")

A Whisper (seq2seq) run exports as its base does: the HF ``WhisperForConditionalGeneration``
folder with the base's tokenizer and feature extractor and SpeechBrain's ``hyperparams.yaml``
(``cl_ssvdo.asr.whisper.hf_folder.load_whisper_asr(DIR)``, or ``transformers`` directly).

With ``--mlflow`` the folder is also logged to the run's MLflow run as a model
(``mlflow.pyfunc``: :class:`Transcriber`, input a DataFrame with a ``wav`` column of audio
paths, output the transcripts), named ``model_after_exp<i>``, so the model registry can
register and serve it (``--register NAME`` registers it at once).

The functions take the model or its state dict, not a checkpoint file, so anything that holds
a trained model can export it: :func:`export_model` (model + tokenizer), :func:`export_state`
(state dict + base folder), :func:`export_run` (a run folder).

>>> from cl_ssvdo.asr import CharTokenizer, build_asr
>>> import tempfile
>>> folder = export_model(build_asr("ci", 29), CharTokenizer(), tempfile.mkdtemp())
>>> {"hyperparams.yaml", "model.ckpt", "tokenizer.ckpt"} <= {p.name for p in folder.iterdir()}
True
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import torch
import yaml
from torch import nn

__all__ = [
    "ExportResult",
    "Transcriber",
    "export_model",
    "export_run",
    "export_state",
    "export_whisper_state",
    "log_mlflow_model",
]

EXPORT_INFO = "export.json"


def export_model(model: nn.Module, tokenizer: Any, folder: str | Path) -> Path:
    """Writes a plain model as a SpeechBrain pretrained folder (``EncoderASR`` for CTC models).

    Raises ``NotImplementedError`` for other model kinds (Whisper exports from its state dict,
    :func:`export_whisper_state`), ``ValueError`` when adapters are still attached.
    """
    from cl_ssvdo.asr import CTCASR
    from cl_ssvdo.asr.pretrained import export_pretrained

    if not isinstance(model, CTCASR):
        raise NotImplementedError(
            f"export_model of a {type(model).__name__}: it writes CTC models "
            "(cl_ssvdo.asr.CTCASR, loaded by EncoderASR); a Whisper model's state dict exports "
            "with export_whisper_state (a WhisperASR folder), a run with `cl-ssvdo export`"
        )
    return export_pretrained(model, tokenizer, folder)


def export_state(
    state: Mapping[str, torch.Tensor], base_folder: str | Path, folder: str | Path
) -> Path:
    """Loads ``state`` (a plain model's state dict) into the architecture of ``base_folder``
    and exports it to ``folder``; ``ValueError`` names the keys that do not fit."""
    from cl_ssvdo.asr import load_pretrained

    model, tokenizer, _ = load_pretrained(base_folder, device="cpu")
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"export: the state dict does not fit the base model {base_folder}: {exc}"
        ) from exc
    return export_model(model, tokenizer, folder)


WHISPER_PREFIX = "backbone.whisper.model."  # WhisperSeq2Seq's keys of the HF WhisperModel


def export_whisper_state(
    state: Mapping[str, torch.Tensor], base_folder: str | Path, folder: str | Path
) -> Path:
    """A Whisper seq2seq model's plain state dict (adapters merged) as a folder like the base,
    written by the same :func:`~cl_ssvdo.asr.whisper.hf_folder.write_export_folder` as
    ``cl-ssvdo models export``: the HF ``WhisperForConditionalGeneration`` with the new weights,
    the base's config, generation config and tokenizer, and SpeechBrain's ``hyperparams.yaml``
    (load with ``cl_ssvdo.asr.whisper.hf_folder.load_whisper_asr`` or ``transformers``)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

    from cl_ssvdo.asr.whisper.hf_folder import write_export_folder

    weights = {
        "model." + k[len(WHISPER_PREFIX) :]: v
        for k, v in state.items()
        if k.startswith(WHISPER_PREFIX)
    }
    if not weights:
        raise ValueError(
            f"export: the state dict has no {WHISPER_PREFIX}* keys (not a Whisper model)"
        )
    if "model.decoder.embed_tokens.weight" in weights:  # the output projection is tied to it
        weights["proj_out.weight"] = weights["model.decoder.embed_tokens.weight"]
    base = str(base_folder)
    config = WhisperConfig.from_pretrained(base, local_files_only=True)
    generation = GenerationConfig.from_pretrained(base, local_files_only=True)
    tokenizer = WhisperTokenizer.from_pretrained(base, local_files_only=True)
    try:
        return write_export_folder(Path(folder), weights, config, generation, tokenizer)
    except RuntimeError as exc:  # load_state_dict(strict=True): names the keys that do not fit
        raise ValueError(
            f"export: the state dict does not fit the base model {base_folder}: {exc}"
        ) from exc


@dataclass(frozen=True)
class ExportResult:
    """Where an export went: the folder, the experience, the MLflow model URI (if logged)."""

    folder: Path
    experience: int
    domain: str
    model_uri: str | None = None

    def describe(self) -> str:
        what = "the base model" if self.experience == 0 else f"experience {self.experience}"
        text = f"exported {what} ({self.domain}) to {self.folder}"
        if self.model_uri:
            text += f"\nMLflow model: {self.model_uri}"
        return text


def export_run(
    run_dir: str | Path,
    folder: str | Path,
    *,
    after: int | None = None,
    mlflow: bool = False,
    tracking_uri: str | None = None,
    register: str | None = None,
) -> ExportResult:
    """Exports the model of run folder ``run_dir`` after experience ``after`` (1-based; 0 =
    the base; default the last finished one) to ``folder``; optionally logs it to MLflow."""
    from experiments.checkpoint import load_model_state
    from experiments.run_dir import RunDir

    run = RunDir(run_dir)
    state = run.state()
    if not state:
        raise FileNotFoundError(f"export: {run_dir} is not a run folder (no state file)")
    config = yaml.safe_load((run.path / "config.yaml").read_text()) if run.is_run_dir() else {}
    kind = ((config or {}).get("model") or {}).get("kind", "ctc")
    if kind not in ("ctc", "whisper"):
        raise NotImplementedError(
            f"export: {run_dir} has a {kind!r} base (model.kind: {kind}); CTC bases export as "
            "an EncoderASR folder and Whisper seq2seq bases as a WhisperASR folder; the "
            "whisper-ctc head (the project's own CTC head on the Whisper encoder) has no "
            "SpeechBrain interface to export to"
        )
    if state.get("mode", "sequential") != "sequential":
        raise ValueError(
            f"export: {run_dir} is a {state.get('mode')!r} reference run; only sequential runs "
            "keep a model per experience"
        )
    completed = int(state.get("completed", -1))
    experience = completed if after is None else int(after)
    if experience < 0 or experience > max(completed, 0):
        raise ValueError(
            f"export: --after {experience} is out of range: {run_dir} has finished "
            f"experiences 0..{completed}"
        )
    domains = list(state.get("domains", []))
    domain = "base" if experience == 0 else domains[experience - 1]
    base = state["base_model"]
    if kind == "whisper":
        out = export_whisper_state(load_model_state(run.checkpoints, experience), base, folder)
    elif experience == 0:
        from cl_ssvdo.asr import load_pretrained

        model, tokenizer, _ = load_pretrained(base, device="cpu")
        out = export_model(model, tokenizer, folder)
    else:
        out = export_state(load_model_state(run.checkpoints, experience), base, folder)
    adapter = run.path / "adapters" / f"exp_{experience:03d}"
    if adapter.is_dir():  # train.save_adapters: the unmerged adapter of this experience
        import shutil

        shutil.copytree(adapter, out / "adapter", dirs_exist_ok=True)
    info = {
        "run_dir": str(Path(run_dir).resolve()),
        "run_name": state.get("run_name"),
        "experience": experience,
        "domain": domain,
        "trained_domains": domains[:experience],
        "base_model": base,
        "kind": kind,
        "mlflow_run_id": (state.get("mlflow") or {}).get("run_id"),
    }
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    uri = None
    if mlflow:
        run_id = info["mlflow_run_id"]
        if not run_id:
            raise ValueError(
                f"export: {run_dir} has no MLflow run (offline?): `cl-ssvdo sync` it first"
            )
        uri = log_mlflow_model(
            out,
            run_id,
            tracking_uri or (state.get("mlflow") or {}).get("tracking_uri"),
            name=f"model_after_exp{experience}",
            register=register,
        )
    return ExportResult(out, experience, domain, uri)


with warnings.catch_warnings():
    # MLflow warns at class creation that an untyped ``predict`` gets no schema validation;
    # typed, it would validate against its own schema rules instead of accepting a DataFrame.
    warnings.simplefilter("ignore", UserWarning)

    class Transcriber(mlflow.pyfunc.PythonModel):
        """``mlflow.pyfunc`` model around an exported folder: ``predict(DataFrame with a "wav"
        column of audio paths, or a list of paths) -> list of transcripts`` (greedy CTC)."""

        def load_context(self, context) -> None:  # noqa: ANN001 (see above)
            folder = Path(context.artifacts["asr_folder"])
            info = (
                json.loads((folder / EXPORT_INFO).read_text())
                if (folder / EXPORT_INFO).is_file()
                else {}
            )
            if info.get("kind") == "whisper":
                from cl_ssvdo.asr.whisper.hf_folder import load_whisper_asr

                self.asr = load_whisper_asr(folder)
            else:
                from cl_ssvdo.asr.pretrained import load_encoder_asr

                self.asr = load_encoder_asr(folder, freeze=True)

        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            if hasattr(model_input, "columns"):
                model_input = model_input["wav"]
            return [str(self.asr.transcribe_file(str(p))) for p in list(model_input)]


def log_mlflow_model(
    folder: str | Path,
    run_id: str,
    tracking_uri: str | None,
    *,
    name: str,
    register: str | None = None,
) -> str:
    """Logs exported ``folder`` as a pyfunc :class:`Transcriber` model into MLflow run
    ``run_id`` (its artifacts and a LoggedModel); returns the model URI to load or serve."""
    import mlflow

    from experiments.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, "outputs")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hints", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=Transcriber(),
                artifacts={"asr_folder": str(Path(folder).resolve())},
                pip_requirements=_requirements(),
                registered_model_name=register,
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return info.model_uri


def _requirements() -> list[str]:
    import importlib.metadata

    out = []
    for name in ("torch", "torchaudio", "speechbrain", "mlflow"):
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
