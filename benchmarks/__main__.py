"""Command line: generate the synthetic stream, prepare a real corpus, or validate a stream.

python -m benchmarks generate --preset small --cache-dir cache/streams [--seed 0]
    [--domains adult child accent] [--workers 2]
python -m benchmarks prepare librispeech|myst|commonvoice|l2arctic|cgn|generic PATH OUT
python -m benchmarks validate STREAM_ROOT [--policy error|skip]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate (or reuse) the synthetic stream")
    gen.add_argument("--preset", default="small", choices=["tiny", "small", "medium"])
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--domains", nargs="+", default=["adult", "child", "accent"])
    gen.add_argument("--cache-dir", default="cache/streams")
    gen.add_argument("--workers", type=int, default=2)
    prep = sub.add_parser("prepare", help="turn a local corpus into stream manifests")
    prep.add_argument(
        "corpus", choices=["librispeech", "myst", "commonvoice", "l2arctic", "cgn", "generic"]
    )
    prep.add_argument("path")
    prep.add_argument("out")
    val = sub.add_parser("validate", help="validate every manifest of a stream")
    val.add_argument("root")
    val.add_argument("--policy", default="error", choices=["error", "skip"])
    args = parser.parse_args(argv)

    if args.command == "generate":
        from benchmarks.synthetic import generate_stream

        info = generate_stream(
            {"preset": args.preset, "seed": args.seed, "domains": args.domains},
            args.cache_dir,
            workers=args.workers,
        )
        print(info.root)
    elif args.command == "prepare":
        from benchmarks import corpora

        prepare = getattr(corpora, f"prepare_{args.corpus}")
        info = prepare(args.path, args.out)
        print(f"{info.root}: domains {info.domains}, {info.total_hours():.2f} h")
    else:
        from benchmarks.validate import validate_stream

        for report in validate_stream(args.root, policy=args.policy).values():
            print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
