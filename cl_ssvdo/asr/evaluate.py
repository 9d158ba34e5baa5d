"""WER/CER of a model, or of a saved pretrained folder, on any manifest: overall, per domain and
per speaker/voice.

Edit counts come from :mod:`cl_ssvdo.data.scoring` (jiwer), the scorer of the Avalanche WER
metric too; corpus-level WER is ``100 * sum(word edits) / sum(reference words)``.

Command line (also ``cl-ssvdo evaluate --model FOLDER --manifest CSV ...``, which takes run
folders too and prints tables)::

    python -m cl_ssvdo.asr.evaluate FOLDER MANIFEST.csv [MANIFEST.csv ...] [--json out.json]

A manifest's domain is its ``domain`` column, else the file name without ``.csv``.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cl_ssvdo.data import (
    ManifestError,
    StreamError,
    concat_manifests,
    error_rate,
    stream_resamples,
    utterance_error_counts,
)
from cl_ssvdo.progress import progress_bar

from .batching import iterate_batches, num_batches
from .decode import Decoder, make_decoder
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class UtteranceScore:
    """Reference, hypothesis and edit counts of one utterance."""

    id: str
    ref: str
    hyp: str
    word_edits: int
    ref_words: int
    char_edits: int
    ref_chars: int
    speaker: str = ""
    domain: str = ""

    @classmethod
    def score(
        cls, utt_id: str, ref: str, hyp: str, speaker: str = "", domain: str = ""
    ) -> UtteranceScore:
        """Scores ``hyp`` against ``ref`` (words split on whitespace; characters incl. the
        single spaces between words).

        >>> u = UtteranceScore.score("u1", "the cat sat", "the bat sat down")
        >>> u.word_edits, u.ref_words, u.char_edits, u.ref_chars
        (2, 3, 6, 11)
        """
        (word_edits,), (ref_words,) = utterance_error_counts([ref], [hyp], "word")
        (char_edits,), (ref_chars,) = utterance_error_counts([ref], [hyp], "char")
        return cls(
            id=utt_id,
            ref=ref,
            hyp=hyp,
            word_edits=word_edits,
            ref_words=ref_words,
            char_edits=char_edits,
            ref_chars=ref_chars,
            speaker=speaker,
            domain=domain,
        )


@dataclass
class EvalReport:
    """Scores of a set of utterances; rates are percentages (WER can exceed 100)."""

    utterances: list[UtteranceScore] = field(default_factory=list)

    @property
    def wer(self) -> float:
        """Corpus-level word error rate, percent."""
        return error_rate(
            sum(u.word_edits for u in self.utterances), sum(u.ref_words for u in self.utterances)
        )

    @property
    def cer(self) -> float:
        """Corpus-level character error rate, percent."""
        return error_rate(
            sum(u.char_edits for u in self.utterances), sum(u.ref_chars for u in self.utterances)
        )

    def by(self, key: str) -> dict[str, EvalReport]:
        """Sub-reports grouped by ``"domain"`` or ``"speaker"``."""
        if key not in ("domain", "speaker"):
            raise ValueError(f"EvalReport.by: key must be 'domain' or 'speaker', got {key!r}")
        groups: dict[str, list[UtteranceScore]] = defaultdict(list)
        for u in self.utterances:
            groups[getattr(u, key)].append(u)
        return {name: EvalReport(items) for name, items in sorted(groups.items())}

    def summary(self) -> dict[str, Any]:
        """Nested dict: overall, per domain and per speaker WER/CER and counts."""

        def row(rep: EvalReport) -> dict[str, Any]:
            return {"wer": rep.wer, "cer": rep.cer, "utterances": len(rep.utterances)}

        return {
            **row(self),
            "domains": {k: row(v) for k, v in self.by("domain").items()},
            "speakers": {k: row(v) for k, v in self.by("speaker").items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """Summary plus every utterance."""
        return {**self.summary(), "utterance_scores": [asdict(u) for u in self.utterances]}


def format_table(report: EvalReport, key: str) -> str:
    """A text table of WER/CER per ``"domain"`` or ``"speaker"`` (plus ``all``); the name
    column is as wide as the longest name, so long names never shift the numbers.

    >>> rep = EvalReport([UtteranceScore.score("a", "x y", "x z", domain="a_long_domain_name")])
    >>> print(format_table(rep, "domain"))
    domain               WER %   CER %  utts
    a_long_domain_name   50.00   33.33     1
    all                  50.00   33.33     1
    """
    groups = report.by(key)
    names = [name or "-" for name in groups]
    width = max(len(n) for n in [key, "all", *names])
    lines = [f"{key:<{width}}  {'WER %':>6}  {'CER %':>6}  {'utts':>4}"]
    for name, rep in zip(names, groups.values(), strict=True):
        lines.append(f"{name:<{width}}  {rep.wer:>6.2f}  {rep.cer:>6.2f}  {len(rep.utterances):>4}")
    lines.append(
        f"{'all':<{width}}  {report.wer:>6.2f}  {report.cer:>6.2f}  {len(report.utterances):>4}"
    )
    return "\n".join(lines)


def load_manifests(
    manifests: Sequence[str | Path], resample: bool | None = None, **kwargs: Any
) -> Any:
    """:func:`concat_manifests`, with each utterance's empty ``domain`` set to its manifest's
    file name (``child_test.csv`` -> ``child_test``). Missing files raise ``FileNotFoundError``
    naming them. ``resample`` None: as the manifests' streams say (``stream.json``
    ``"resample"``; False outside a stream), so audio at another rate is an error unless asked
    for, as in pretraining and the run."""
    missing = [str(m) for m in manifests if not Path(m).is_file()]
    if missing:
        raise FileNotFoundError(f"manifest(s) not found: {', '.join(missing)}")
    if resample is None:
        resample = any(stream_resamples(m) for m in manifests)
    data = concat_manifests(manifests, resample=resample, **kwargs)
    stems = [
        Path(m).stem for m, part in zip(manifests, data.datasets, strict=True) for _ in part.ids
    ]
    data.domains = [d or stem for d, stem in zip(data.domains, stems, strict=True)]
    return data


@torch.no_grad()
def transcribe(
    model: nn.Module,
    tokenizer: Tokenizer,
    data: Any,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    decoder: Decoder | None = None,
    progress: bool = False,
) -> list[tuple[str, str, str]]:
    """``(utt_id, reference, hypothesis)`` for every utterance of ``data``.

    ``data`` is an item dataset ``(wav, words, id)`` or an iterable of batches
    ``(wavs, wav_lens, words, ids)``; the model is put in eval mode and restored afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    decoder = decoder or make_decoder(tokenizer)
    was_training = model.training
    model.eval()
    out: list[tuple[str, str, str]] = []
    try:
        batches = iterate_batches(data, batch_size, shuffle=False)
        for wavs, wav_lens, words, ids in progress_bar(
            batches,
            total=num_batches(data, batch_size),
            disable=not progress,
            desc="decode",
            unit="batch",
        ):
            log_probs, out_lens = model(wavs.to(device), wav_lens.to(device))
            hyps = decoder(log_probs, out_lens)
            out.extend(zip(map(str, ids), map(str, words), hyps, strict=True))
    finally:
        model.train(was_training)
    return out


def evaluate_model(
    model: nn.Module,
    tokenizer: Tokenizer,
    data: Any,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    beam_size: int = 1,
    progress: bool = False,
) -> EvalReport:
    """Scores ``model`` on ``data``; speakers/domains come from ``data.ids`` with
    ``data.speakers`` / ``data.domains`` when the dataset has them."""
    results = transcribe(
        model,
        tokenizer,
        data,
        batch_size=batch_size,
        device=device,
        decoder=make_decoder(tokenizer, beam_size),
        progress=progress,
    )
    ids = getattr(data, "ids", None)
    speakers = dict(zip(ids, getattr(data, "speakers", []) or [], strict=False)) if ids else {}
    domains = dict(zip(ids, getattr(data, "domains", []) or [], strict=False)) if ids else {}
    return EvalReport(
        [
            UtteranceScore.score(i, ref, hyp, speakers.get(i, ""), domains.get(i, ""))
            for i, ref, hyp in results
        ]
    )


def evaluate_folder(
    folder: str | Path,
    manifests: Sequence[str | Path],
    *,
    batch_size: int = 16,
    device: str | None = None,
    beam_size: int = 1,
    progress: bool = True,
    resample: bool | None = None,
) -> EvalReport:
    """Loads a pretrained folder (:func:`cl_ssvdo.asr.load_pretrained`) and scores it on the
    manifests (CSV ``ID,duration,wav,spk_id,wrd,domain``); ``resample`` as in
    :func:`load_manifests`."""
    from .pretrained import load_pretrained

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, _ = load_pretrained(folder, device=device)
    data = load_manifests(manifests, resample=resample)
    return evaluate_model(
        model,
        tokenizer,
        data,
        batch_size=batch_size,
        device=device,
        beam_size=beam_size,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints the summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m cl_ssvdo.asr.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("folder", help="pretrained folder (hyperparams.yaml + ckpt files)")
    parser.add_argument("manifests", nargs="+", help="manifest CSV files")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument(
        "--resample",
        action="store_true",
        default=None,
        help="resample audio at another rate than 16 kHz (default: as the stream.json says)",
    )
    args = parser.parse_args(argv)
    report = evaluate_folder(
        args.folder,
        args.manifests,
        batch_size=args.batch_size,
        device=args.device,
        beam_size=args.beam_size,
        resample=args.resample,
    )
    summary = report.summary()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return summary


def run_cli(main: Callable[[], object]) -> None:
    """Runs a command-line ``main``; bad data (:class:`ManifestError`, :class:`StreamError`)
    ends it with ``error: <message>`` on stderr and status 2, no traceback.

    >>> import contextlib
    >>> def bad() -> None:
    ...     raise ManifestError("m.csv", "manifest file not found")
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     try:
    ...         run_cli(bad)
    ...     except SystemExit as exc:
    ...         print("status", exc.code)
    error: m.csv: manifest file not found
    status 2
    """
    try:
        main()
    except (ManifestError, StreamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    run_cli(main)
