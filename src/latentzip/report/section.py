"""What an experiment gets (a Context) and hands back (a Section).

Experiments decide what to show; `page.py` lays any section out the same way, and
`results.json` gets each section's `results` under its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bank import ModelBank
from .budget import Budget
from .inputs import Inputs


@dataclass
class Context:
    inputs: Inputs
    budget: Budget
    bank: ModelBank
    progress: bool
    shared: dict[str, Any] = field(default_factory=dict)  # what later experiments reuse


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    file: str  # name under figures/
    png: bytes
    caption: str


@dataclass
class Section:
    key: str  # its key in results.json
    title: str
    intro: str  # what the experiment does, in a sentence or two
    results: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # sentences computed from the results


def num(value: float | None, digits: int = 2) -> str:
    """A table cell: thousands separated, a dash for a missing value."""
    return "–" if value is None else f"{value:,.{digits}f}"
