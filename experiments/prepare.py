"""What a run needs before training: the stream (generated or reused) and the base model
(pretrained once, then reused from its folder).

- :func:`prepare_stream` -> ``cl_ssvdo.data.StreamInfo``: ``stream.root`` when set, else
  ``benchmarks.synthetic.generate_stream(stream.synthetic, stream.cache_dir)`` (cached by
  config hash, so a second call costs nothing).
- :func:`prepare_base_model` -> ``(model, tokenizer, folder)``: ``model.pretrained`` when it
  exists, else ``cl_ssvdo.asr.pretrain`` on the train split of ``model.pretrain.domains``
  (valid split for early stopping) and ``export_pretrained`` to the folder. Pretraining
  checkpoints live in ``<folder>.train`` and resume after a kill.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.config import ConfigError, config_hash
from experiments.folder_lock import folder_lock

__all__ = [
    "base_folder",
    "describe_stream",
    "evaluate_config",
    "load_base_model",
    "make_stream_benchmark",
    "prepare_base_model",
    "prepare_stream",
    "stream_key",
    "validate_stream",
]


def prepare_stream(config: Mapping[str, Any], progress: bool = True):
    """The stream of ``config`` (generated on first use for a synthetic stream)."""
    from cl_ssvdo.data import StreamInfo

    stream = config["stream"]
    if stream.get("root"):
        root = Path(stream["root"])
        if not (root / "stream.json").is_file():
            raise ConfigError(f"{root} is not a stream folder (no stream.json)", "stream.root")
        info = StreamInfo.load(root)
    else:
        if stream.get("synthetic") is None:
            raise ConfigError("set stream.root (a stream folder) or stream.synthetic", "stream")
        from benchmarks.synthetic import generate_stream

        try:
            info = generate_stream(
                stream["synthetic"],
                stream["cache_dir"],
                workers=stream["workers"],
                progress=progress,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), "stream.synthetic") from exc
    domains = stream.get("domains")
    if domains:
        unknown = [d for d in domains if d not in info.domains]
        if unknown:
            raise ConfigError(f"unknown domain(s) {unknown}", "stream.domains", info.domains)
    return info


def stream_domains(config: Mapping[str, Any], info) -> list[str]:
    """The domains of the run, in stream order (``stream.domains`` or all)."""
    return list(config["stream"].get("domains") or info.domains)


def eval_split(config: Mapping[str, Any]) -> str:
    """The split whose experiences fill the WER matrix: ``stream.eval_split``, test when absent
    (absent rather than defaulted, so configs written before the key keep their hash).

    >>> eval_split({"stream": {}}), eval_split({"stream": {"eval_split": "valid"}})
    ('test', 'valid')
    """
    return config["stream"].get("eval_split") or "test"


def make_stream_benchmark(
    config: Mapping[str, Any],
    info,
    splits: Sequence[str] = ("train", "test"),
    skipped_dir: str | Path | None = None,
):
    """Avalanche benchmark over the run's domains (one experience per domain); with
    ``stream.validate: skip`` the dropped rows are in ``bench.skipped_rows`` and listed in
    ``skipped_dir`` (the run's artifacts, not the stream folder)."""
    from benchmarks.stream import make_benchmark

    return make_benchmark(
        info,
        splits=tuple(splits),
        domains=stream_domains(config, info),
        max_utterances=config["stream"].get("max_utterances"),
        validate=config["stream"].get("validate"),
        skipped_dir=skipped_dir,
    )


def stream_key(config: Mapping[str, Any], info) -> str:
    """Identifies the data a run saw (stream contents, domains, utterance cap)."""
    return config_hash(
        {
            "stream": info.config.get("hash") or str(Path(info.root).resolve()),
            "domains": stream_domains(config, info),
            "max_utterances": config["stream"].get("max_utterances"),
        }
    )


def describe_stream(info) -> str:
    """Hours per domain and split, one line per domain."""
    lines = [f"stream {info.name!r} at {info.root} ({info.total_hours():.2f} h)"]
    for domain in info.domains:
        hours = info.hours.get(domain, {})
        parts = ", ".join(f"{split} {hours.get(split, 0.0):.3f} h" for split in info.splits)
        lines.append(f"  {domain:<10} {parts}")
    return "\n".join(lines)


def validate_stream(config: Mapping[str, Any], info) -> list[str]:
    """Every bad row of every manifest (``benchmarks.validate``, policy ``skip``), as text."""
    from benchmarks.validate import validate_stream as check

    problems = []
    for name, report in check(info, policy="skip").items():
        problems += [f"{name}: {s.row_id}: {s.field}: {s.reason}" for s in report.skipped]
    return problems


def _pretrain_domains(config: Mapping[str, Any], info) -> list[str]:
    domains = config["model"]["pretrain"].get("domains") or [stream_domains(config, info)[0]]
    unknown = [d for d in domains if d not in info.domains]
    if unknown:
        raise ConfigError(f"unknown domain(s) {unknown}", "model.pretrain.domains", info.domains)
    return list(domains)


def base_folder(config: Mapping[str, Any], info) -> Path:
    """The pretrained folder of ``config``: ``model.pretrained`` or a folder under
    ``<workdir>/base`` named after the preset and a hash of what determines the base."""
    model = config["model"]
    if model.get("pretrained"):
        return Path(model["pretrained"])
    preset = model["preset"]
    label = preset if isinstance(preset, str) else "custom"
    key = config_hash(
        {
            "preset": preset,
            "pretrain": model["pretrain"],
            "stream": info.config.get("hash") or str(Path(info.root).resolve()),
            "domains": _pretrain_domains(config, info),
            "max_utterances": config["stream"].get("max_utterances"),
        }
    )
    return Path(config["workdir"]) / "base" / f"{label}-{key}"


def is_pretrained_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "hyperparams.yaml").is_file() and (folder / "model.ckpt").is_file()


def _manifest_data(info, domains: Sequence[str], split: str, limit: int | None):
    """One dataset over several manifests, keeping ``ids``/``durations`` (no audio loaded)."""
    from cl_ssvdo.data import ManifestDataset

    parts = []
    for domain in domains:
        part = ManifestDataset(
            info.manifest(domain, split),
            root=info.root,
            sample_rate=info.sample_rate,
            resample=info.resample,
        )
        if limit is not None:
            part.rows = part.rows[:limit]
        parts.append(part)
    data = torch.utils.data.ConcatDataset(parts)
    data.ids = [i for p in parts for i in p.ids]  # type: ignore[attr-defined]
    data.durations = [d for p in parts for d in p.durations]  # type: ignore[attr-defined]
    data.domains = [d for p in parts for d in p.domains]  # type: ignore[attr-defined]
    return data


def load_base_model(folder: str | Path, device: str | torch.device = "cpu"):
    """``(model, tokenizer)`` from a pretrained folder (``cl_ssvdo.asr.load_pretrained``)."""
    from cl_ssvdo.asr import load_pretrained

    model, tokenizer, _ = load_pretrained(folder, device=str(device))
    return model, tokenizer


def prepare_base_model(
    config: Mapping[str, Any],
    info,
    *,
    progress: bool = True,
    force: bool = False,
    device: str | torch.device | None = None,
):
    """``(model, tokenizer, folder)``: the base model, pretrained first when its folder is
    missing (or ``force``). Returns a freshly loaded model (pretrained weights, train mode off)."""
    from experiments.factory import resolve_device

    folder = base_folder(config, info)
    device = device or resolve_device(config["train"]["device"])

    def busy(holder: str) -> None:
        print(
            f"cl-ssvdo: base {folder} is being built by process {holder}; waiting", file=sys.stderr
        )

    if force or not is_pretrained_folder(folder):
        # Two runs of a study can need the same missing base at once: one pretrains, the other
        # waits and then loads what the first exported.
        with folder_lock(folder, on_busy=busy):
            if force and folder.exists():
                shutil.rmtree(folder)
                shutil.rmtree(folder.with_name(folder.name + ".train"), ignore_errors=True)
            if not is_pretrained_folder(folder):
                _pretrain_base(config, info, folder, device, progress)
    model, tokenizer = load_base_model(folder, device)
    return model, tokenizer, folder


def _pretrain_base(config: Mapping[str, Any], info, folder: Path, device, progress: bool) -> None:
    """Pretrains the base of ``config`` on its pretraining domains and exports it to ``folder``."""
    from cl_ssvdo.asr import CharTokenizer, export_pretrained, pretrain
    from cl_ssvdo.asr.fingerprint import stream_sha256
    from cl_ssvdo.asr.pretrain import build_seeded_asr

    if config["model"].get("pretrained") and folder.exists() and any(folder.iterdir()):
        raise ConfigError(
            f"{folder} exists but is not a pretrained folder (no hyperparams.yaml/model.ckpt)",
            "model.pretrained",
        )
    settings = config["model"]["pretrain"]
    domains = _pretrain_domains(config, info)
    limit = config["stream"].get("max_utterances")
    tokenizer = CharTokenizer()
    try:
        # Seeded before building: torch seeds its generator at random in every process, so
        # an unseeded initialisation made every pretraining a different base (issue 19).
        model = build_seeded_asr(config["model"]["preset"], tokenizer.vocab_size, settings["seed"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), "model.preset") from exc
    pretrain(
        model,
        tokenizer,
        _manifest_data(info, domains, "train", limit),
        _manifest_data(info, domains, "valid", limit),
        out_dir=folder.with_name(folder.name + ".train"),
        max_epochs=settings["max_epochs"],
        max_steps=settings["max_steps"],
        max_minutes=settings["max_minutes"],
        lr=settings["lr"],
        weight_decay=settings["weight_decay"],
        warmup_steps=settings["warmup_steps"],
        batch_size=settings["batch_size"],
        early_stopping_patience=settings["early_stopping_patience"],
        device=device,
        seed=settings["seed"],
        export=False,
        progress=progress,
    )
    export_pretrained(model, tokenizer, folder, stream_sha=stream_sha256(info.root))


def evaluate_config(
    config: Mapping[str, Any],
    model_folder: str | Path | None = None,
    split: str = "test",
    progress: bool = True,
) -> str:
    """WER/CER per domain of a pretrained folder (default: the config's base) as a table."""
    from cl_ssvdo.asr import evaluate_model
    from experiments.factory import resolve_device

    info = prepare_stream(config, progress=progress)
    device = resolve_device(config["train"]["device"])
    if model_folder is None:
        model, tokenizer, model_folder = prepare_base_model(config, info, progress=progress)
    else:
        if not is_pretrained_folder(model_folder):
            raise FileNotFoundError(
                f"{model_folder}: not a pretrained folder (hyperparams.yaml, model.ckpt)"
            )
        model, tokenizer = load_base_model(model_folder, device)
    lines = [
        f"model {model_folder} on the {split} split",
        f"{'domain':<12}{'WER %':>8}{'CER %':>8}{'utts':>7}",
    ]
    for domain in stream_domains(config, info):
        data = _manifest_data(info, [domain], split, config["stream"].get("max_utterances"))
        report = evaluate_model(
            model,
            tokenizer,
            data,
            batch_size=config["train"]["eval_batch_size"],
            device=device,
            progress=progress,
        )
        lines.append(f"{domain:<12}{report.wer:>8.2f}{report.cer:>8.2f}{len(data):>7}")
    return "\n".join(lines)
