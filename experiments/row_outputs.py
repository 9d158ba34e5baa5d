"""What one WER-matrix row of a run produces: the evaluation of every test domain (hypotheses
and per-utterance errors written to the run folder), the per-layer budget rows of the adapter
plugins, and the joint-training experience of the IM reference.

Example
-------
>>> plugin_budget_rows([])
[]
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.run_dir import RunDir

__all__ = [
    "plugin_budget_rows",
    "copy_utterance_errors",
    "evaluate_row",
    "joint_experience",
    "write_utterance_errors",
]


def evaluate_row(
    strategy, bench, wer_matrix, row: int, folder: RunDir
) -> tuple[list[float], list[float]]:
    """Evaluate every experience of the evaluation split (``wer_matrix.stream``: test, or valid
    for learning-rate selection) into ``row``; hypotheses go to artifacts/hypotheses."""
    wer_matrix.force_row = row
    eval_stream = getattr(bench, f"{wer_matrix.stream}_stream")
    strategy.eval(eval_stream)
    n = len(eval_stream)
    cells = [wer_matrix.cells[(row, j)] for j in range(n)]
    hyp_dir = folder.artifacts / "hypotheses"
    hyp_dir.mkdir(parents=True, exist_ok=True)
    lines = ["domain\tid\treference\thypothesis"]
    for cell in cells:
        lines += [
            f"{cell.domain}\t{i}\t{r}\t{h}"
            for i, r, h in zip(cell.ids, cell.refs, cell.hyps, strict=True)
        ]
    (hyp_dir / f"row{row}.tsv").write_text("\n".join(lines) + "\n")
    write_utterance_errors(
        folder.artifacts / "utterances", row, cells, _speakers(bench, wer_matrix.stream)
    )
    return [float(c.wer) for c in cells], [float(c.cer) for c in cells]


def _speakers(bench, split: str) -> dict[tuple[str, str], str]:
    """``(domain, utterance id) -> voice`` from the ``split`` manifests (empty when unknown)."""
    from cl_ssvdo.data import read_manifest

    info = getattr(bench, "stream_info", None)
    if info is None:
        return {}
    out: dict[tuple[str, str], str] = {}
    for domain in bench.domains:
        with contextlib.suppress(OSError, ValueError, KeyError):
            for r in read_manifest(info.manifest(domain, split)):
                out[(domain, r.ID)] = r.spk_id
    return out


def write_utterance_errors(
    folder: Path, row: int, cells: Sequence[Any], speakers: Mapping[tuple[str, str], str]
) -> Path:
    """``<folder>/after_exp_<row>.csv.gz``: one line per test utterance of every domain after
    ``row`` experiences: ``row, domain, id, speaker, errors, words`` (jiwer's word errors
    S + D + I and reference words), what the study's voice/utterance bootstrap resamples."""
    import pandas as pd

    records = [
        {
            "row": row,
            "domain": cell.domain,
            "id": uid,
            "speaker": speakers.get((cell.domain, uid), ""),
            "errors": int(e),
            "words": int(w),
        }
        for cell in cells
        for uid, e, w in zip(cell.ids, cell.errors, cell.words, strict=True)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"after_exp_{row}.csv.gz"
    columns = ["row", "domain", "id", "speaker", "errors", "words"]
    pd.DataFrame.from_records(records, columns=columns).to_csv(path, index=False)
    return path


def copy_utterance_errors(folder: Path, src: int, dst: int) -> None:
    """Row ``dst`` is row ``src`` (an evaluate-only experience): same per-utterance errors."""
    import pandas as pd

    path = folder / f"after_exp_{src}.csv.gz"
    if path.is_file():
        frame = pd.read_csv(path, dtype={"id": str, "speaker": str}, keep_default_na=False)
        frame.assign(row=dst).to_csv(folder / f"after_exp_{dst}.csv.gz", index=False)


def joint_experience(bench, upto: int):
    """One experience holding the training data of the first ``upto`` domains."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    data = bench.train_stream[0].dataset
    for k in range(1, upto):
        data = data.concat(bench.train_stream[k].dataset)
    exp = benchmark_from_datasets(train=[data]).train_stream[0]
    exp.domain = "+".join(bench.domains[:upto])
    return exp


def plugin_budget_rows(plugins: Sequence[Any], step: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for plugin in plugins:
        for record in getattr(plugin, "records", []) or []:
            for layer in record.layers:
                rows.append(
                    {
                        "experience": step if step is not None else record.experience + 1,
                        "method": record.method,
                        "layer": layer.name,
                        "group": layer.group,
                        "out_features": layer.out_features,
                        "in_features": layer.in_features,
                        "k": layer.k,
                        "l": layer.l,
                        "rank": layer.rank,
                        "trainable": layer.trainable,
                        "drift_u": layer.drift_u,
                        "drift_v": layer.drift_v,
                        "subspace": getattr(layer, "subspace", ""),
                        **getattr(layer, "diagnostics", {}),
                    }
                )
    return rows
