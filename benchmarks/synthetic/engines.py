"""Text-to-speech engines (espeak-ng, flite, festival) and the sox post-processing step.

Every engine runs as a subprocess with explicit parameters, so the same text and parameters
give the same bytes; sox runs in repeatable mode (``-R``: fixed dither seed). Missing programs
or voices raise :class:`EngineMissingError` naming the Debian package that provides them
(all in Debian main).

Depends on the standard library only.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.synthetic.voices import Voice

__all__ = [
    "EngineMissingError",
    "SynthesisError",
    "SynthesisJob",
    "check_voices",
    "postprocess",
    "synthesize_batch",
]

_PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival", "sox": "sox"}
_FESTIVAL_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
    "ked_diphone": "festvox-kdlpc16k",
    "rab_diphone": "festvox-rablpc16k",
}


class EngineMissingError(RuntimeError):
    """A synthesis program or voice is not installed; the message names the Debian package."""


class SynthesisError(RuntimeError):
    """An engine or sox failed on one utterance; the message has the command and its stderr."""


@dataclass(frozen=True)
class SynthesisJob:
    """One utterance to synthesise: text, voice, engine options and sox effects."""

    text: str
    voice: Voice
    out_path: Path
    engine_options: tuple[str, ...] = ()
    effects: tuple[str, ...] = field(default_factory=tuple)


def _require_program(engine: str) -> str:
    program = _PROGRAMS[engine]
    path = shutil.which(program)
    if path is None:
        raise EngineMissingError(
            f"'{program}' is not installed: install the Debian package '{program}' "
            f"(apt-get install {program}; scripts/setup.sh does this)"
        )
    return path


def _run(cmd: Sequence[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        list(cmd), input=stdin, capture_output=True, text=True, check=False, env=_ENV
    )
    if proc.returncode != 0:
        raise SynthesisError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return proc


# Engines read no locale-dependent settings we rely on, but pin it anyway for repeatability.
_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


@functools.cache
def _espeak_inventory() -> tuple[frozenset[str], frozenset[str]]:
    exe = _require_program("espeak")
    langs = _run([exe, "--voices"], "espeak-ng --voices").stdout.splitlines()[1:]
    variants = _run([exe, "--voices=variant"], "espeak-ng --voices=variant").stdout.splitlines()[1:]
    lang_set = {line.split()[1] for line in langs if len(line.split()) > 1}
    var_set = {line.split()[4].removeprefix("!v/") for line in variants if len(line.split()) > 4}
    return frozenset(lang_set), frozenset(var_set)


@functools.cache
def _flite_voices() -> frozenset[str]:
    exe = _require_program("flite")
    out = _run([exe, "-lv"], "flite -lv").stdout
    return frozenset(out.split(":", 1)[-1].split())


@functools.cache
def _festival_voices() -> frozenset[str]:
    exe = _require_program("festival")
    out = _run([exe, "-b", "(print (voice.list))"], "festival voice.list").stdout
    return frozenset(out.replace("(", " ").replace(")", " ").split())


def check_voices(voices: Iterable[Voice]) -> None:
    """Raise :class:`EngineMissingError` unless every program and voice needed is installed.

    Engines silently fall back to a default voice when asked for an unknown one, so the check
    compares against each engine's own voice list.
    """
    _require_program("sox")
    for voice in sorted(set(voices), key=lambda v: v.id):
        if voice.engine in _PROGRAMS:
            _require_program(voice.engine)
        if voice.engine == "espeak":
            langs, variants = _espeak_inventory()
            if voice.name not in langs:
                raise EngineMissingError(
                    f"espeak-ng has no voice {voice.name!r} (Debian package 'espeak-ng-data', "
                    "pulled in by 'espeak-ng')"
                )
            if voice.variant and voice.variant not in variants:
                raise EngineMissingError(f"espeak-ng has no speaker variant {voice.variant!r}")
        elif voice.engine == "flite":
            if voice.name not in _flite_voices():
                raise EngineMissingError(
                    f"flite has no voice {voice.name!r} (Debian package 'flite' ships kal, kal16, "
                    "rms, slt, awb)"
                )
        elif voice.engine == "festival":
            if voice.name not in _festival_voices():
                pkg = _FESTIVAL_PACKAGES.get(voice.name, "festvox-*")
                raise EngineMissingError(
                    f"festival voice {voice.name!r} is not installed: install the Debian package "
                    f"'{pkg}' (apt-get install {pkg})"
                )
        else:
            raise ValueError(f"unknown engine {voice.engine!r} for voice {voice.id}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _synthesize_raw(jobs: Sequence[SynthesisJob], raw_paths: Sequence[Path]) -> None:
    """Write each job's engine output (engine sample rate) to ``raw_paths``; one voice per call."""
    voice = jobs[0].voice
    if any(j.voice != voice for j in jobs):
        raise ValueError("synthesize_batch: all jobs of a batch must use the same voice")
    if voice.engine == "espeak":
        exe = _require_program("espeak")
        name = voice.name + (f"+{voice.variant}" if voice.variant else "")
        for job, raw in zip(jobs, raw_paths, strict=True):
            _run(
                [exe, "-v", name, *job.engine_options, "-w", str(raw), job.text],
                f"espeak-ng ({job.out_path.name})",
            )
    elif voice.engine == "flite":
        exe = _require_program("flite")
        for job, raw in zip(jobs, raw_paths, strict=True):
            _run(
                [exe, "-voice", voice.name, *job.engine_options, "-t", job.text, "-o", str(raw)],
                f"flite ({job.out_path.name})",
            )
    elif voice.engine == "festival":
        # One festival process per batch: starting festival costs more than synthesising a line.
        exe = _require_program("festival")
        lines = [f"(voice_{voice.name})"]
        for job, raw in zip(jobs, raw_paths, strict=True):
            lines.extend(job.engine_options)
            lines.append(
                f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(job.text)})) "
                f"{_scheme_string(str(raw))} 'riff)"
            )
        with tempfile.NamedTemporaryFile(
            "w", suffix=".scm", delete=False, dir=raw_paths[0].parent
        ) as fh:
            fh.write("\n".join(lines) + "\n")
        try:
            _run([exe, "-b", fh.name], f"festival {voice.name}")
        finally:
            os.unlink(fh.name)
    else:
        raise ValueError(f"unknown engine {voice.engine!r}")
    for job, raw in zip(jobs, raw_paths, strict=True):
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise SynthesisError(
                f"{voice.engine} wrote no audio for {job.out_path.name} ({job.text!r})"
            )


def postprocess(raw: Path, out: Path, effects: Sequence[str], sample_rate: int = 16000) -> None:
    """``sox -R raw -c 1 -b 16 out EFFECTS rate 16000 gain -n -3``, written atomically."""
    sox = _require_program("sox")
    tmp = out.with_name(out.stem + ".part.wav")
    cmd = [
        sox,
        "-R",
        "-V1",
        str(raw),
        "-c",
        "1",
        "-b",
        "16",
        str(tmp),
        *effects,
        "rate",
        str(sample_rate),
        "gain",
        "-n",
        "-3",
    ]
    _run(cmd, f"sox ({out.name})")
    os.replace(tmp, out)


def synthesize_batch(
    jobs: Sequence[SynthesisJob], work_dir: Path, sample_rate: int = 16000
) -> None:
    """Synthesise and post-process a batch of same-voice jobs; each output appears atomically."""
    if not jobs:
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        raws = [Path(tmp) / f"{i:04d}.wav" for i in range(len(jobs))]
        _synthesize_raw(jobs, raws)
        for job, raw in zip(jobs, raws, strict=True):
            job.out_path.parent.mkdir(parents=True, exist_ok=True)
            postprocess(raw, job.out_path, job.effects, sample_rate)
