"""A short markdown report tying the science metrics, tables and figures together."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reactive_al.nested import flatten


def format_value(value: Any) -> str:
    """Human-readable cell: 4 significant digits for floats, ``—`` for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{float(value):.4g}"
    # '|' would split a markdown table cell
    return str(value).replace("|", "\\|").replace("\n", " ")


def _has_tabulate() -> bool:
    return importlib.util.find_spec("tabulate") is not None


def dataframe_to_markdown(df: pd.DataFrame, use_tabulate: bool | None = None) -> str:
    """Markdown (pipe) table of ``df``; ``DataFrame.to_markdown`` when tabulate is installed.

    The fallback avoids a dependency just for reports. The index is written only when it
    carries information (not a default 0..n−1 range).
    """
    show_index = not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0
                      and df.index.step == 1 and df.index.name is None)
    if use_tabulate is None:
        use_tabulate = _has_tabulate()
    if use_tabulate:
        return df.to_markdown(index=show_index, floatfmt=".4g")
    header = [str(c) for c in df.columns]
    rows = [[format_value(v) for v in row] for row in df.itertuples(index=False, name=None)]
    if show_index:
        header = [str(df.index.name or "")] + header
        rows = [[format_value(i)] + r for i, r in zip(df.index, rows, strict=True)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(
    title: str, system: str, metrics: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
) -> str:
    """Markdown report: headline numbers, then one section per table and per figure.

    ``metrics`` may be nested (keys are joined with ``/``); ``figures`` maps a caption to a PNG
    path relative to where the report is written, so the links work when the folder moves.
    """
    parts = [f"# {title}", "", f"**System:** {system}", ""]
    flat = flatten(metrics)
    if flat:
        headline = pd.DataFrame({"metric": list(flat), "value": [format_value(v)
                                                                 for v in flat.values()]})
        parts += ["## Headline numbers", "", dataframe_to_markdown(headline), ""]
    if tables:
        parts += ["## Tables", ""]
        for name, df in tables.items():
            parts += [f"### {name}", "", dataframe_to_markdown(df), ""]
    if figures:
        parts += ["## Figures", ""]
        for caption, path in figures.items():
            parts += [f"### {caption}", "", f"![{caption}]({Path(path).as_posix()})", ""]
    return "\n".join(parts).rstrip() + "\n"
