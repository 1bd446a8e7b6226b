"""Verbs of the experiments: report (any data set) and demo (the quick report, explained)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_DIR = "latentzip-demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="run the experiments on a data set and write an HTML report")
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset name[:split][[:N]] or a directory of images")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="where index.html, results.json and figures/ go")
    p.add_argument("--quick", action="store_true", help="a few epochs on a subset: minutes instead of hours")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs per model (overrides the budget)")
    p.add_argument("--images", type=int, default=None, metavar="N", help="train on at most N images")
    p.add_argument("--test-images", type=int, default=None, metavar="N", help="test on at most N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-f", "--force", action="store_true", help="replace the files of an earlier report in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_report)

    p = sub.add_parser("demo", help="the quick report on Fashion-MNIST (or MNIST), with a summary: minutes on a CPU")
    p.add_argument("-o", "--output", default=DEMO_DIR, metavar="DIR",
                   help=f"where the report goes (default ./{DEMO_DIR}; an earlier report there is replaced)")
    p.set_defaults(func=_demo)


def _report(args: argparse.Namespace) -> int:
    from ..report import Budget, build_report

    budget = (Budget.quick(args.seed) if args.quick else Budget.full(args.seed)).limited(
        epochs=args.epochs, train_images=args.images, test_images=args.test_images
    )
    report = build_report(args.data, args.output, budget, force=args.force, progress=not args.quiet)
    print(f"report written to {report.index} ({report.seconds / 60:.1f} min)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..report import demo
    from ..report.page import table_text

    report = demo(args.output)
    print()
    print(table_text(report.summary))
    for finding in report.results["rate_distortion"]["findings"]:
        print(f"- {finding}")
    print(f"\nFull report: {Path(report.index).resolve()} ({report.seconds / 60:.1f} min)")
    return 0
