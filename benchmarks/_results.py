"""Where benchmark scripts put their JSON results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` to benchmarks/results/<name>.json and say so."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out
