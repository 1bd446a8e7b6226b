"""`latentzip bulk encode|decode|eval|compress`: many files at once on Dask."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..fsio import write_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bulk", help="encode, decode, evaluate or compress many files on a Dask cluster",
                       description="Bulk jobs on Dask (pip install 'latentzip[dask]'). SRC and DST are paths or "
                                   "fsspec URLs (s3://, gs://, ...). A re-run skips finished shards.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help)
        v.add_argument("src", metavar="SRC")
        where = v.add_mutually_exclusive_group()
        where.add_argument("--workers", type=int, default=None, metavar="N",
                           help="start a local cluster of N worker processes (default: one per core)")
        where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="join a running Dask scheduler (tcp://host:8786)")
        v.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if name != "eval":
            v.add_argument("-f", "--force", action="store_true",
                           help="write into a target that is not empty (files of the same names are replaced)")
        v.set_defaults(func=func)
        return v

    def coding(v: argparse.ArgumentParser) -> None:
        v.add_argument("-m", "--model", required=True, help="shipped model name, model file, or MODEL:PRESET")
        v.add_argument("--quality", type=int, default=None, metavar="Q", help="one of the model's qualities")
        v.add_argument("--max-error", type=int, default=None, metavar="D", help="bound every pixel's error to D levels")
        v.add_argument("--effort", type=int, default=None, metavar="E",
                       help="conv models: 0 (fastest) to 2 (fewest bytes), default as in latentzip encode")
        v.add_argument("--shard-size", type=int, default=None, metavar="K", help="images per shard (default 1000)")

    v = verb("encode", "code every image under SRC into shards of K images and a Parquet manifest", _encode)
    coding(v)
    v.add_argument("-o", "--output", required=True, metavar="DST")
    v.add_argument("--psnr", action="store_true", help="record each image's PSNR in the manifest")

    v = verb("decode", "restore the images of a bulk encode as PNG files", _decode)
    v.add_argument("-o", "--output", required=True, metavar="OUT")
    v.add_argument("-m", "--model", default=None, help="model file, when the shards were not made by a shipped model")

    v = verb("eval", "bytes, bpp and PSNR of coding every image under SRC, writing nothing", _eval)
    coding(v)
    v.add_argument("--json", default=None, metavar="FILE", help="also write the summary and every image's row")

    v = verb("compress", "compress every file under SRC losslessly to DST/NAME.lzc, with a manifest", _compress)
    v.add_argument("-o", "--output", required=True, metavar="DST")
    v.add_argument("--level", type=int, default=None, choices=range(1, 10), metavar="1-9",
                   help="as latentzip compress -1 .. -9")
    v.add_argument("--shard-size", type=int, default=None, metavar="K", help="files per task (default 1000)")


def _where(args: argparse.Namespace) -> dict[str, Any]:
    return {"workers": args.workers, "scheduler": args.scheduler, "progress": not args.quiet}


def _shard_size(args: argparse.Namespace) -> dict[str, Any]:
    return {} if args.shard_size is None else {"shard_size": args.shard_size}


def _report(what: str, job: Any, to: str) -> None:
    resumed = f" ({job.skipped} found finished)" if job.skipped else ""
    print(f"{len(job.rows)} {what} in {job.shards} shard(s){resumed} -> {to} ({job.seconds:.1f} s)", file=sys.stderr)


def _encode(args: argparse.Namespace) -> int:
    from ..scale import bulk_encode

    job = bulk_encode(args.model, args.src, args.output, quality=args.quality, max_error=args.max_error,
                      effort=args.effort, psnr=args.psnr, force=args.force, **_shard_size(args), **_where(args))
    _report("image(s)", job, args.output)
    return 0


def _decode(args: argparse.Namespace) -> int:
    from ..scale import bulk_decode

    job = bulk_decode(args.src, args.output, model=args.model, force=args.force, **_where(args))
    _report("image(s)", job, args.output)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..scale import bulk_eval

    job = bulk_eval(args.model, args.src, quality=args.quality, max_error=args.max_error, effort=args.effort,
                    **_shard_size(args), **_where(args))
    for key, value in job.summary.items():
        print(f"{key:<16} {value:.4f}" if isinstance(value, float) else f"{key:<16} {value}")
    if args.json:
        write_bytes(args.json, (json.dumps({"summary": job.summary, "images": job.rows}, indent=1) + "\n").encode())
    return 0


def _compress(args: argparse.Namespace) -> int:
    from ..scale import bulk_compress

    job = bulk_compress(args.src, args.output, level=args.level, force=args.force, **_shard_size(args),
                        **_where(args))
    _report("file(s)", job, args.output)
    return 0
