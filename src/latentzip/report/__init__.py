"""The experiments and the HTML report: `build_report(data, out)`.

    from latentzip.report import Budget, build_report
    report = build_report("fashion-mnist", "report/", Budget.quick())
    print(report.index)        # report/index.html, with results.json and figures/ beside it

Every experiment goes through latentzip's public API (train, encode, decode, evaluate,
the baselines), the same calls a user makes.
"""

from .budget import Budget
from .build import EXPERIMENTS, Report, build_report, demo

__all__ = ["Budget", "EXPERIMENTS", "Report", "build_report", "demo"]
