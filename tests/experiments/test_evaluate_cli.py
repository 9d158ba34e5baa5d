"""``cl-ssvdo evaluate --manifest``: any CSV test set, any model folder or run, per-domain and
per-speaker tables whose columns fit long names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cl_ssvdo.asr import load_pretrained
from cl_ssvdo.asr.evaluate import evaluate_model, load_manifests
from experiments.cli import build_parser, main
from tests.experiments.test_export import _adapted, _fake_run

LONG = "a_rather_long_custom_domain_name"


def _write(path: Path, rows: list[dict], domain: str | None) -> Path:
    fields = ["ID", "duration", "wav", "spk_id", "wrd"] + (["domain"] if domain else [])
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: row[k] for k in fields if k != "domain"}
                | ({"domain": domain} if domain else {})
            )
    return path


@pytest.fixture
def manifests(tiny_stream, tmp_path: Path) -> list[Path]:
    def rows(domain: str) -> list[dict]:
        with tiny_stream.manifest(domain, "test").open() as fh:
            found = list(csv.DictReader(fh))[:3]
        return [{**r, "wav": str(tiny_stream.root / r["wav"])} for r in found]

    return [
        _write(tmp_path / "mine.csv", rows("child"), LONG),
        _write(tmp_path / "noisy_lab.csv", rows("accent"), None),  # no domain column
    ]


def test_evaluate_manifests_of_a_run(
    manifests, pretrained_ci: Path, tiny_stream, tmp_path: Path, capsys
) -> None:
    model, tokenizer = _adapted(pretrained_ci)
    run_dir = _fake_run(tmp_path, pretrained_ci, model, tiny_stream.domains)
    out_json = tmp_path / "report.json"
    argv = ["--quiet", "evaluate", "--model", str(run_dir), "--after", "1", "--json", str(out_json)]
    for m in manifests:
        argv += ["--manifest", str(m)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    expected = evaluate_model(model, tokenizer, load_manifests(manifests))
    domains = expected.by("domain")
    assert sorted(domains) == sorted([LONG, "noisy_lab"])  # column, else the file name
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("domain"))
    row = next(line for line in lines if line.startswith(LONG))
    assert row.startswith(LONG + "  ") and len(header) == len(row)  # right-aligned columns
    assert f"{domains[LONG].wer:.2f}" in row
    speakers = json.loads(out_json.read_text())["speakers"]
    assert set(speakers) == set(expected.by("speaker")) and len(speakers) >= 1
    assert next(line for line in lines if line.startswith("speaker"))
    assert f"{expected.wer:.2f}" in next(line for line in lines if line.startswith("all"))


def test_evaluate_names_missing_manifest_and_documents_split(
    pretrained_ci: Path, tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "nope.csv"
    assert main(["evaluate", "--model", str(pretrained_ci), "--manifest", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "--split {train,valid,test}" in help_text and "which split" in help_text
    assert "python -m cl_ssvdo.asr.evaluate" in help_text
    base, _, _ = load_pretrained(pretrained_ci)
    assert base is not None
