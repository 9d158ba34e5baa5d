"""Measurements behind docs/whisper.md (run by hand; not tests).

python -m experiments.whisper_figures base-wer --model DIR --stream DIR [--every K]
    WER/CER per domain (test split) of a Whisper folder with the full 30 s window and a
    reduced one (--audio-ctx, default 250 = 5 s), on every K-th utterance.
python -m experiments.whisper_figures windows --model DIR --stream DIR [--every K]
        [--windows 250,500,750,1500] [--domains adult,child,accent]
    Per window (encoder positions, 50 per second) and domain on the same utterances: WER with
    and without the loop guard (decode.loop_start; --no-compare: with only), CER, seconds per utterance (encoder +
    guarded greedy decoding) and the mean hypothesis length in tokens.
python -m experiments.whisper_figures step-time --model DIR --stream DIR [--steps N]
    Seconds per training step (forward + loss + backward + AdamW) of SSVD-O vs LoRA at
    matched budget on the FFN linears, batch --batch, window --audio-ctx.
"""

from __future__ import annotations

import argparse
import time

import torch

from cl_ssvdo.data.scoring import cer as cer_of
from cl_ssvdo.data.scoring import wer as wer_of


def _data(stream: str, domain: str, every: int):
    from cl_ssvdo.data import ManifestDataset, StreamInfo

    info = StreamInfo.load(stream)
    data = ManifestDataset(info.manifest(domain, "test"), root=info.root, resample=info.resample)
    data.rows = data.rows[::every]
    return info, data


def _batches(data, size: int):
    from cl_ssvdo.data import collate_speech

    for start in range(0, len(data), size):
        yield collate_speech([data[i] for i in range(start, min(len(data), start + size))])


def base_wer(args: argparse.Namespace) -> None:
    from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
    from cl_ssvdo.data import StreamInfo

    model = WhisperSeq2Seq.from_folder(args.model).eval()
    domains = StreamInfo.load(args.stream).domains
    print(f"{'domain':<8}{'window':>8}{'WER %':>8}{'CER %':>8}{'utts':>6}{'s/utt':>7}")
    for domain in domains:
        _, data = _data(args.stream, domain, args.every)
        for ctx in (1500, args.audio_ctx):
            model.backbone.audio_ctx = ctx
            refs, hyps, started = [], [], time.perf_counter()
            with torch.no_grad():
                for wavs, lens, words, _ in _batches(data, args.batch):
                    hyps += model.transcribe(model(wavs, lens), words)
                    refs += words
            per = (time.perf_counter() - started) / len(refs)
            print(
                f"{domain:<8}{ctx / 50:>7.0f}s{wer_of(refs, hyps):>8.2f}"
                f"{cer_of(refs, hyps):>8.2f}{len(refs):>6}{per:>7.2f}",
                flush=True,
            )


def windows(args: argparse.Namespace) -> None:
    from cl_ssvdo.asr.whisper.decode import MIN_REPEAT
    from cl_ssvdo.asr.whisper.normalize import normalize_hypothesis
    from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
    from cl_ssvdo.data import StreamInfo

    model = WhisperSeq2Seq.from_folder(args.model).eval()
    domains = args.domains.split(",") if args.domains else StreamInfo.load(args.stream).domains
    ctxs = [int(c) for c in args.windows.split(",")]
    print(
        f"{'domain':<8}{'window':>7}{'WER %':>8}{'no guard':>9}{'CER %':>8}{'utts':>6}"
        f"{'s/utt':>7}{'tokens':>8}",
        flush=True,
    )
    for domain in domains:
        _, data = _data(args.stream, domain, args.every)
        for ctx in ctxs:
            model.backbone.audio_ctx = ctx
            refs, hyps, raw, lengths, seconds = [], [], [], [], 0.0
            with torch.no_grad():
                for wavs, lens, words, _ in _batches(data, args.batch):
                    started = time.perf_counter()
                    out = model(wavs, lens)
                    model.min_repeat = MIN_REPEAT
                    tokens = model.transcribe_tokens(out)
                    seconds += time.perf_counter() - started
                    hyps += [
                        normalize_hypothesis(model.tokenizer.decode(t, skip_special_tokens=True), w)
                        for t, w in zip(tokens, words, strict=True)
                    ]
                    lengths += [len(t) for t in tokens]
                    if args.compare:
                        model.min_repeat = 0
                        raw += model.transcribe(out, words)
                    refs += words
            print(
                f"{domain:<8}{ctx / 50:>6.0f}s{wer_of(refs, hyps):>8.2f}"
                f"{wer_of(refs, raw) if raw else float('nan'):>9.2f}"
                f"{cer_of(refs, hyps):>8.2f}{len(refs):>6}{seconds / len(refs):>7.2f}"
                f"{sum(lengths) / len(lengths):>8.1f}",
                flush=True,
            )


def step_time(args: argparse.Namespace) -> None:
    from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
    from cl_ssvdo.baselines import apply_adapter
    from strategies.adapters.base import trainable_count
    from strategies.adapters.peft import BaselinePlugin

    _, data = _data(args.stream, "child", 1)
    batch = next(_batches(data, args.batch))
    schedule = {"constant": {"inner_ratio": 0.25, "outer_rank": 8}}
    results = {}
    for method in ("ssvdo", "lora"):
        model = WhisperSeq2Seq.from_folder(args.model, audio_ctx=args.audio_ctx)
        model.train()
        targets = ["*.fc1", "*.fc2"]
        if method == "ssvdo":
            apply_adapter(model, "ssvdo", targets, inner_ratio=0.25, outer_rank=8)
        else:  # rank matched to the SSVD-O budget, as whisper_lora.yaml (the plugin's rule)
            rank, _ = BaselinePlugin("lora", targets=tuple(targets), match=schedule).matched_rank(
                model, 0
            )
            apply_adapter(model, "lora", targets, rank=rank)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        times = []
        for step in range(args.steps + 1):
            started = time.perf_counter()
            out = model(batch[0], batch[1])
            loss = model.loss(out, batch[2])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step:  # the first step warms up allocators
                times.append(time.perf_counter() - started)
        results[method] = (sum(times) / len(times), trainable_count(model))
        print(f"{method}: {results[method][0]:.2f} s/step, {results[method][1]:,} trainable")
    print(f"ratio ssvdo/lora: {results['ssvdo'][0] / results['lora'][0]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.whisper_figures")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("base-wer", "step-time", "windows"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True, help="HF Whisper folder")
        p.add_argument("--stream", required=True, help="stream folder (stream.json)")
        p.add_argument("--audio-ctx", type=int, default=250)
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--every", type=int, default=1)
        p.add_argument("--steps", type=int, default=5)
        p.add_argument("--windows", default="250,500,750,1500", help="audio_ctx values")
        p.add_argument("--domains", default="", help="comma-separated (default: all)")
        p.add_argument(
            "--no-compare", dest="compare", action="store_false", help="skip the unguarded decoding"
        )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    {"base-wer": base_wer, "step-time": step_time, "windows": windows}[args.cmd](args)


if __name__ == "__main__":
    main()
