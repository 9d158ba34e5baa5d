"""One run on several devices: a continual run, each experience trained data-parallel with
``torchrun``.

    torchrun --standalone --nproc_per_node 2 -m experiments.distributed \\
        --pretrained outputs/base/ci --stream outputs/streams/tiny --domains child accent \\
        --adapter ssvdo --inner-ratio 0.25 --steps 20 --global-batch 16 --out run.json

Plain ``torch.nn.parallel.DistributedDataParallel``, not Avalanche's distributed support:
Avalanche 0.6 marks it experimental, it needs its own distributed data loaders and collate
wrappers inside the template, and its loggers raise on non-main ranks; this module keeps the
project's CTC loss, batching by duration and adapters, and adds exactly what data parallelism
needs:

* the SSVD-O decomposition (an SVD per layer) runs once, on rank 0, and the adapted model is
  broadcast to the other ranks (``broadcast_object_list``): every rank starts from bit-identical
  weights, and no rank decomposes on its own (an SVD's signs can differ between processes);
* each global batch (``--global-batch`` utterances, batched by duration as in a single-process
  run) is split into ``world_size`` equal shards; DDP averages the gradients, so a step equals
  the single-process step on the whole batch (the mean CTC loss is a mean over utterances);
* evaluation (WER per domain) and the merge of the adapters run on rank 0; the merged model is
  broadcast back, so all ranks hold the same weights for the next experience.

Two layer kinds see the shard, not the global batch: dropout (different random numbers per
rank) and batch normalisation in training mode (statistics of the shard; ``SyncBatchNorm``
needs CUDA). ``--frozen-norm`` keeps the base's normalisation statistics (sensible when only
adapters train) and ``--no-dropout`` switches dropout off; with both a DDP run follows the
single-process run step by step (the test checks the loss trajectory).

>>> shard([0, 1, 2, 3, 4, 5], rank=1, world_size=2)
[1, 3, 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["adapt_once", "broadcast_module", "continual_run", "shard", "train_experience"]


def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's share of a global batch (every ``world_size``-th utterance)."""
    return list(batch[rank::world_size])


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside ``torchrun``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: str = "cpu") -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (gloo on CPU, nccl on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def broadcast_module(module: nn.Module | None, src: int = 0) -> nn.Module:
    """``src``'s module on every rank (pickled once, exact); the module itself outside DDP."""
    rank, size = world()
    if size == 1:
        assert module is not None
        return module
    box = [module if rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def adapt_once(model: nn.Module, targets: Sequence[str], inner_ratio: float) -> nn.Module:
    """SSVD-O on ``targets`` decomposed on rank 0 only, then the adapted model on every rank."""
    from cl_ssvdo.ssvdo.inject import inject_ssvdo

    rank, _ = world()
    if rank == 0:
        inject_ssvdo(model, list(targets), inner_ratio=inner_ratio)
    return broadcast_module(model if rank == 0 else None)


def merge_once(model: nn.Module) -> nn.Module:
    """Merge the adapters on rank 0 and hand the merged model to every rank."""
    from cl_ssvdo.ssvdo.inject import merge_ssvdo

    rank, _ = world()
    if rank == 0:
        merge_ssvdo(model)
    return broadcast_module(model if rank == 0 else None)


def no_dropout(model: nn.Module) -> None:
    """Dropout probability 0 everywhere (``nn.Dropout*`` modules and float ``dropout`` fields)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d):
            module.p = 0.0
        elif hasattr(module, "dropout") and isinstance(module.dropout, float):
            module.dropout = 0.0


def freeze_norm(model: nn.Module) -> None:
    """Batch-norm layers in eval mode (running statistics, not the shard's)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_experience(
    model: nn.Module,
    tokenizer: Any,
    data: Any,
    *,
    steps: int,
    global_batch: int,
    lr: float = 1e-3,
    seed: int = 0,
    frozen_norm: bool = False,
) -> list[float]:
    """``steps`` AdamW steps over the trainable parameters on global batches of ``data``
    (item dataset ``(wav [T], words, id)``); returns the global mean loss of every step
    (the same on every rank)."""
    from cl_ssvdo.asr.batching import durations_of, sorted_batches
    from cl_ssvdo.asr.loss import ctc_batch_loss
    from cl_ssvdo.data import collate_speech

    rank, size = world()
    if global_batch % size:
        raise ValueError(f"--global-batch {global_batch} is not divisible by {size} ranks")
    params = [p for p in model.parameters() if p.requires_grad]
    wrapped = nn.parallel.DistributedDataParallel(model) if size > 1 else model
    optimizer = torch.optim.AdamW(params, lr=lr)
    durations = durations_of(data)
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        full = [b for b in sorted_batches(durations, global_batch, shuffle=True, seed=seed + epoch)
                if len(b) == global_batch]  # fmt: skip
        if not full:
            raise ValueError(f"fewer than {global_batch} utterances in the experience")
        batches += full
        epoch += 1
    losses = []
    model.train()
    if frozen_norm:
        freeze_norm(model)
    for step in range(steps):
        part = shard(batches[step], rank, size)
        wavs, wav_lens, words, _ = collate_speech([data[i] for i in part])
        device = next(model.parameters()).device
        optimizer.zero_grad(set_to_none=True)
        log_probs, out_lens = wrapped(wavs.to(device), wav_lens.to(device))
        loss = ctc_batch_loss(log_probs, out_lens, words, tokenizer)
        loss.backward()  # DDP: gradients averaged over the ranks during backward
        optimizer.step()
        value = loss.detach().clone()
        if size > 1:
            dist.all_reduce(value)
            value /= size
        losses.append(float(value))
    return losses


def continual_run(
    model: nn.Module,
    tokenizer: Any,
    stream: str | Path,
    domains: Sequence[str],
    eval_domains: Sequence[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The stream's experiences in order, each adapted once (rank 0), trained data-parallel,
    merged once (rank 0) and evaluated on rank 0: row 0 of the WER matrix is the base model,
    row ``i`` the model after experience ``i`` (the runner's definition)."""
    from cl_ssvdo.asr.evaluate import evaluate_model
    from cl_ssvdo.data import ManifestDataset, manifest_path

    rank, size = world()
    tests = {
        d: ManifestDataset(manifest_path(stream, d, "test"), root=stream) for d in eval_domains
    }

    def row() -> list[float]:
        return [float(evaluate_model(model, tokenizer, tests[d]).wer) for d in eval_domains]

    matrix = [row()] if rank == 0 else []
    losses: dict[str, list[float]] = {}
    for domain in domains:
        if args.adapter == "ssvdo":
            model = adapt_once(model, [args.targets], args.inner_ratio)
        model.to(args.device)
        train = ManifestDataset(manifest_path(stream, domain, "train"), root=stream)
        if args.max_utterances:
            train = torch.utils.data.Subset(train, range(min(args.max_utterances, len(train))))
        losses[domain] = train_experience(model, tokenizer, train, steps=args.steps,
                                          global_batch=args.global_batch, lr=args.lr,
                                          seed=args.seed, frozen_norm=args.frozen_norm)  # fmt: skip
        if args.adapter == "ssvdo":
            model = merge_once(model)
        if rank == 0:
            matrix.append(row())
    return {"world_size": size, "domains": list(domains), "eval_domains": list(eval_domains),
            "losses": losses, "wer_matrix": matrix}  # fmt: skip


def _log_run(out: dict[str, Any], args: argparse.Namespace) -> str:
    """Rank 0's record of the run: the run folder first, MLflow while the store answers."""
    from experiments.recorder import RunRecorder

    recorder = RunRecorder(args.run_dir, args.tracking_uri, run_name="torchrun")
    recorder.log_params({"world_size": out["world_size"], "adapter": args.adapter,
                         "inner_ratio": args.inner_ratio, "steps": args.steps,
                         "global_batch": args.global_batch, "lr": args.lr, "seed": args.seed,
                         "base_model": args.pretrained, "stream.path": args.stream,
                         "stream.domains": ",".join(out["domains"])})  # fmt: skip
    for i, wers in enumerate(out["wer_matrix"]):
        recorder.log_metrics({f"wer/{d}": w for d, w in zip(out["eval_domains"], wers, strict=True)}, step=i)  # fmt: skip
    summary = {k: v for k, v in out.get("summary", {}).items() if isinstance(v, float)}
    if summary:
        recorder.log_metrics(summary, step=len(out["domains"]))
    recorder.finish("FINISHED")
    return recorder.run_id or ""


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m experiments.distributed``: a continual run; its WER matrix to --out."""
    p = argparse.ArgumentParser(prog="python -m experiments.distributed", description=__doc__)
    p.add_argument("--pretrained", required=True, help="a pretrained model folder")
    p.add_argument("--stream", required=True, help="a stream root (manifests/<domain>_<split>.csv)")
    p.add_argument("--domains", nargs="+", required=True, help="the experiences, in order")
    p.add_argument("--eval-domains", nargs="*", default=None, help="default: --domains")
    p.add_argument("--adapter", choices=["ssvdo", "full"], default="ssvdo")
    p.add_argument("--targets", default="*ffn.0", help="SSVD-O layer glob")
    p.add_argument("--inner-ratio", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=10, help="steps per experience")
    p.add_argument("--global-batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-utterances", type=int, default=None)
    p.add_argument("--no-dropout", action="store_true", help="dropout off (see above)")
    p.add_argument("--frozen-norm", action="store_true", help="batch norm in eval mode")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON with losses and the WER matrix (rank 0)")
    p.add_argument("--run-dir", default=None, help="record the run here (rank 0)")
    p.add_argument("--tracking-uri", default=None, help="and in this MLflow store")
    args = p.parse_args(argv)

    from cl_ssvdo import metrics
    from cl_ssvdo.asr.pretrained import load_pretrained

    torch.set_num_threads(1)
    rank, size = setup(args.device)
    torch.manual_seed(args.seed)
    model, tokenizer, _ = load_pretrained(args.pretrained, device=args.device, trust_folder=False)
    if args.no_dropout:
        no_dropout(model)
    eval_domains = args.eval_domains or args.domains
    out = continual_run(model, tokenizer, args.stream, args.domains, eval_domains, args)
    if rank == 0:
        if list(eval_domains) == list(args.domains):
            out["summary"] = metrics.summarize(out["wer_matrix"])
        if args.run_dir or args.tracking_uri:
            out["run_id"] = _log_run(out, args)
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))
        print(json.dumps(out))
    if size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
