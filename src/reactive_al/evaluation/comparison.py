"""Comparison of query methods from their campaigns' results (plain data, no Kedro).

The driver (:mod:`reactive_al.benchmark`) loads each campaign's learning curve (or, for an
unfinished campaign, its evaluated iterations) and explored frames through the Kedro catalog
and hands them here: :func:`method_result` summarises one method, :func:`compare` sets every
method against the reference method (labels needed to reach its final error),
:func:`aggregate_seeds` gives mean, std, min and max over replicate seeds (whose parameters
:func:`seed_overrides` derives), :func:`markdown_summary` prints the tables and
:func:`learning_curve_panels` feeds :func:`reactive_al.evaluation.plots.learning_curves`.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from reactive_al.evaluation.volumes import volume_exploration, volume_lines
from reactive_al.nested import get_path

#: Columns of a campaign's learning curve copied into the benchmark result.
CURVE_COLUMNS = {
    "n_labels": "n_labels",
    "test/force_mae_ev_per_a": "force_mae_ev_per_a",
    "test/force_rmse_ev_per_a": "force_rmse_ev_per_a",
    "test/stress_mae_gpa": "stress_mae_gpa",
    "test/energy_mae_mev_per_atom": "energy_mae_mev_per_atom",
    "test/path/force_mae_ev_per_a": "path_force_mae_ev_per_a",
    "test/neb/barrier_error_kcal_mol": "neb_barrier_error_kcal_mol",
    "test/neb/model_barrier_kcal_mol": "neb_model_barrier_kcal_mol",
    "test/neb/reaction_energy_error_kcal_mol": "reaction_energy_error_kcal_mol",
    "test/path/qm_path_barrier_error_kcal_mol": "qm_path_barrier_error_kcal_mol",
    "test/calibration/force_spearman": "force_spearman",
    "test/calibration/force_coverage_95": "force_coverage_95",
    "test/calibration/force_miscalibration_area": "force_miscalibration_area",
    "test/calibration/energy_spearman": "committee_energy_spearman",
    "test/calibration/gf_energy_spearman": "gf_energy_spearman",
    "test/calibration/gf_energy_coverage_95": "gf_energy_coverage_95",
    "test/spearman_force_uncertainty_error": "committee_spread_spearman",
    "test/wells_forgetting_ratio": "wells_forgetting_ratio",
    "test/md_stability/median_steps": "md_stability_median_steps",
}

#: Per-subset test errors of a learning curve (``test/<subset>/force_mae_ev_per_a``, and the
#: energy and, for crystals, stress MAE), copied as ``<subset>_force_mae_ev_per_a`` etc. (the
#: path subset's force MAE is ``path_force_mae_ev_per_a``).
SUBSET_METRICS = ("force_mae_ev_per_a", "energy_mae_mev_per_atom", "stress_mae_gpa")
SUBSET_FORCE_MAE = re.compile(rf"^test/([^/]+)/({'|'.join(SUBSET_METRICS)})$")

#: Curve columns averaged over seeds (with every subset's :data:`SUBSET_METRICS`).
AGGREGATED = ("force_mae_ev_per_a", "energy_mae_mev_per_atom", "neb_barrier_error_kcal_mol",
              "force_spearman", "stress_mae_gpa")

#: Panels of the comparison's learning-curve figure: curve column → y-axis label.
CURVE_PANELS = {
    "force_mae_ev_per_a": "test force MAE (eV/Å)",
    "path_force_mae_ev_per_a": "path force MAE (eV/Å)",
    "neb_barrier_error_kcal_mol": "NEB barrier error (kcal/mol)",
}


def labels_to_reach(curve: pd.DataFrame, target: float, column: str = "force_mae_ev_per_a"
                    ) -> float | None:
    """Labels at which a learning curve first reaches ``target`` (linear interpolation).

    None if it never does. The curve's first point counts: a method already at the target
    needs no more labels than it started with.
    """
    x = curve["n_labels"].to_numpy(float)
    y = curve[column].to_numpy(float)
    if y[0] <= target:
        return float(x[0])
    for i in range(1, len(y)):
        if y[i] <= target:
            frac = (y[i - 1] - target) / (y[i - 1] - y[i])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return None


def iteration_row(iteration: int, metrics: Mapping[str, Any], n_labels: int) -> dict[str, Any]:
    """A learning-curve row of an iteration without summary: its test metrics and labels."""
    return {"iteration": iteration, "n_labels": n_labels,
            **{f"test/{key}": v for key, v in metrics.items()}}


def phi_psi(frames: Sequence[Atoms]) -> np.ndarray:
    """Alanine dipeptide's (φ, ψ) in degrees for every frame, ``[n, 2]``."""
    from reactive_al.evaluation.ramachandran import (
        alanine_dipeptide_phi_psi_indices,
        phi_psi_of_frames,
    )

    if not frames:
        return np.zeros((0, 2))
    phi, psi = alanine_dipeptide_phi_psi_indices(frames[0])
    return phi_psi_of_frames(list(frames), phi, psi)


def method_result(table: pd.DataFrame, complete: bool, explored: Sequence[Atoms],
                  ramachandran: bool = False,
                  forms: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One method's entry of the comparison.

    ``table`` is the campaign's learning curve (columns as written by the campaign, see
    :data:`CURVE_COLUMNS`), ``complete`` whether the campaign finished, ``explored`` the
    candidate frames its exploration produced; with ``ramachandran`` (a system's
    ``reporting.ramachandran``) their quadtree coverage of the φ/ψ plane is added; with a
    crystal's ``forms`` (volumes, Å³) the volumes they span (``explored_volume``,
    :func:`~reactive_al.evaluation.volumes.volume_exploration`).
    """
    cols = {k: v for k, v in CURVE_COLUMNS.items() if k in table}
    for k in table:
        match = SUBSET_FORCE_MAE.match(k)
        if match and k not in cols:
            cols[k] = f"{match.group(1)}_{match.group(2)}"
    curve = table[list(cols)].rename(columns=cols)
    last = curve.iloc[-1]
    out: dict[str, Any] = {
        "complete": complete,
        "iterations_evaluated": len(curve),
        "labels_total": int(last["n_labels"]),
        "labels_initial": int(curve["n_labels"].iloc[0]),
        "labels_acquired": int(last["n_labels"] - curve["n_labels"].iloc[0]),
        "final": {k: (None if pd.isna(v) else float(v)) for k, v in last.items()},
        "curve": {k: [None if pd.isna(v) else float(v) for v in curve[k]] for k in curve},
    }
    out["n_explored_frames"] = len(explored)
    if ramachandran and explored:
        from reactive_al.evaluation.ramachandran import quadtree_coverage

        out["ramachandran_coverage"] = quadtree_coverage(phi_psi(explored))
    if forms:
        out["explored_volume"] = volume_exploration(explored, forms)
    return out


def compare(system: str, results: dict[str, dict[str, Any]], timing: Mapping[str, Any],
            reference_path: Mapping[str, Any] | None = None,
            reference_method: str = "random") -> dict[str, Any]:
    """The comparison: every method's result set against ``reference_method``'s curve.

    Adds to each method (in place) the labels it needs to reach the reference's final force
    MAE (all test frames and the path subset), the fraction of the reference's labels that
    is, and the labels to a NEB barrier within 1 kcal/mol of the QM one.
    """
    out: dict[str, Any] = {
        "system": system,
        "methods": results,
        "shared_wall_time_s": timing.get("shared"),
        "parallel_campaigns": timing.get("parallel_campaigns", 1),
        "reference_path": dict(reference_path) if reference_path is not None else None,
    }
    ref = results.get(reference_method)
    if ref is not None:
        out["reference_method"] = reference_method
        out["reference_final_force_mae_ev_per_a"] = ref["final"]["force_mae_ev_per_a"]
        out["reference_final_path_force_mae_ev_per_a"] = ref["final"].get(
            "path_force_mae_ev_per_a")
    for res in results.values():
        curve = pd.DataFrame(res["curve"])
        if ref is not None:
            need = labels_to_reach(curve, out["reference_final_force_mae_ev_per_a"])
            res["labels_to_reach_reference_final"] = need
            res["label_fraction_of_reference"] = (
                None if need is None else need / ref["labels_total"])
            acquired = None if need is None else need - res["labels_initial"]
            res["acquired_fraction_of_reference"] = (
                None if acquired is None or ref["labels_acquired"] == 0
                else max(acquired, 0.0) / ref["labels_acquired"])
            # the same count where the reaction happens: the path subset of the test set
            path_target = out["reference_final_path_force_mae_ev_per_a"]
            res["labels_to_reach_reference_final_path"] = (
                labels_to_reach(curve, path_target, "path_force_mae_ev_per_a")
                if path_target is not None and "path_force_mae_ev_per_a" in curve else None)
        if "neb_barrier_error_kcal_mol" in curve:  # systems with a reaction path only
            curve = curve.dropna(subset=["neb_barrier_error_kcal_mol"])
            curve["abs_barrier_error"] = curve["neb_barrier_error_kcal_mol"].abs()
            res["labels_to_barrier_within_1_kcal_mol"] = (
                labels_to_reach(curve, 1.0, "abs_barrier_error") if len(curve) else None)
    return out


def markdown_summary(out: dict[str, Any]) -> str:
    """A short markdown table of a comparison (final iteration of every method)."""

    def num(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    lines = [f"# Query methods on {out['system']}", "",
             "| method | labels | force MAE (eV/Å) | path force MAE | NEB barrier error "
             "(kcal/mol) | Spearman (force) | labels to reach random's final MAE (all / "
             "path) | labels to barrier within 1 kcal/mol | MD stability (steps) | "
             "Ramachandran coverage | wall time (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, res in out["methods"].items():
        f = res["final"]
        wall = res.get("wall_time_s")
        lines.append(
            f"| {method} | {res['labels_total']} | {num(f.get('force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('path_force_mae_ev_per_a'), '.3f')} | "
            f"{num(f.get('neb_barrier_error_kcal_mol'), '+.2f')} | "
            f"{num(f.get('force_spearman'), '.2f')} | "
            f"{num(res.get('labels_to_reach_reference_final'), '.1f')} / "
            f"{num(res.get('labels_to_reach_reference_final_path'), '.1f')} | "
            f"{num(res.get('labels_to_barrier_within_1_kcal_mol'), '.1f')} | "
            f"{num(f.get('md_stability_median_steps'), '.0f')} | "
            f"{num(res.get('ramachandran_coverage'), '.3f')} | "
            f"{num(None if wall is None else wall / 60, '.1f')} |")
    ref = out.get("reference_path")
    if ref and "barrier_kcal_mol" in ref:
        lines += ["", f"QM climbing-image NEB reference: barrier "
                      f"{ref['barrier_kcal_mol']:.2f} kcal/mol, converged {ref['converged']} "
                      f"in {ref['steps']} steps."]
    unfinished = [m for m, r in out["methods"].items() if not r.get("complete", True)]
    if unfinished:
        lines += ["", f"Stopped before the last iteration (their last evaluated iteration is "
                      f"shown): {', '.join(unfinished)}."]
    lines += volume_lines(out["methods"])
    lines += ["", f"{out.get('parallel_campaigns', 1)} campaign(s) ran at the same time."]
    if len(out.get("seeds", [])) > 1:
        lines += ["", *seeds_summary(out)]
    return "\n".join(lines) + "\n"


def seeds_summary(out: Mapping[str, Any]) -> list[str]:
    """Markdown lines of a multi-seed comparison: final mean ± std [min, max] per method."""

    def pm(stats: Mapping[str, Any] | None, fmt: str) -> str:
        if not stats or stats.get("mean") is None:
            return "–"
        std = "" if stats["std"] is None else f" ± {format(stats['std'], fmt)}"
        return (f"{format(stats['mean'], fmt)}{std} [{format(stats['min'], fmt)}, "
                f"{format(stats['max'], fmt)}] (n={stats['n']})")

    agg = out["aggregate"]
    lines = [f"## Over seeds {', '.join(map(str, out['seeds']))}: mean ± std [min, max]", "",
             "| method | labels | force MAE (eV/Å) | path force MAE | energy MAE (meV/atom) | "
             "NEB barrier error (kcal/mol) | Spearman (force) | labels to reach "
             f"{agg.get('reference_method')}'s mean final MAE (all) | (path) | "
             "wall time (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, a in agg["methods"].items():
        f = a["final"]
        wall = dict(a["wall_time_s"])
        if wall["mean"] is not None:
            wall.update({k: (None if wall[k] is None else wall[k] / 60)
                         for k in ("mean", "std", "min", "max")})
        lines.append(
            f"| {method} | {pm(a['labels_total'], '.0f')} | "
            f"{pm(f.get('force_mae_ev_per_a'), '.3f')} | "
            f"{pm(f.get('path_force_mae_ev_per_a'), '.3f')} | "
            f"{pm(f.get('energy_mae_mev_per_atom'), '.1f')} | "
            f"{pm(f.get('neb_barrier_error_kcal_mol'), '+.2f')} | "
            f"{pm(f.get('force_spearman'), '.2f')} | "
            f"{pm(a.get('labels_to_reach_reference_final'), '.1f')} | "
            f"{pm(a.get('labels_to_reach_reference_final_path'), '.1f')} | "
            f"{pm(wall, '.1f')} |")
    return lines + ["", "n counts the seeds that have the value (a seed that never reaches "
                        "the target is left out of the statistics)."]


def learning_curve_panels(results: Mapping[str, Mapping[str, Any]]
                          ) -> dict[str, dict[str, tuple[list, list]]]:
    """The panels of :func:`~reactive_al.evaluation.plots.learning_curves` for a comparison.

    One panel per column of :data:`CURVE_PANELS` that some method has, one curve per method
    that has it: ``{y label: {method: (n_labels, values)}}``.
    """
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for col, label in CURVE_PANELS.items():
        curves = {method: (res["curve"]["n_labels"], res["curve"][col])
                  for method, res in results.items() if col in res["curve"]}
        if curves:
            panels[label] = curves
    return panels


def learning_curve_bands(aggregate: Mapping[str, Any]
                         ) -> tuple[dict[str, dict[str, tuple[list, list]]],
                                    dict[str, dict[str, tuple[list, list, list]]]]:
    """Mean curves and their ±1 std bands over seeds, for ``plots.learning_curves``.

    ``aggregate`` is :func:`aggregate_seeds`'s output. Returns (panels, bands): panels as
    :func:`learning_curve_panels` with every method's mean curve, bands
    ``{y label: {method: (n_labels, mean - std, mean + std)}}`` where the std exists.
    """
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    bands: dict[str, dict[str, tuple[list, list, list]]] = {}
    for col, label in CURVE_PANELS.items():
        for method, a in aggregate["methods"].items():
            if col not in a["curves"]:
                continue
            st = a["curves"][col]
            mean = [np.nan if v is None else v for v in st["mean"]]
            std = [np.nan if v is None else v for v in st["std"]]
            panels.setdefault(label, {})[method] = (a["n_labels"], mean)
            if not all(np.isnan(std)):
                lo = [m - d for m, d in zip(mean, std, strict=True)]
                hi = [m + d for m, d in zip(mean, std, strict=True)]
                bands.setdefault(label, {})[method] = (a["n_labels"], lo, hi)
    return panels, bands


def jsonable(v: Any) -> Any:
    """``json.dumps`` ``default`` for NumPy scalars."""
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")


def derived_seed(seed: int, default: int, name: str) -> int:
    """Replicate ``seed``'s value of the seed parameter ``name`` (default ``default``).

    Seed 0 keeps ``default``; other seeds draw a 31-bit integer from NumPy's ``SeedSequence``
    of (seed, default, CRC-32 of the name), so two parameters never share a stream.
    """
    if seed == 0:
        return int(default)
    entropy = [int(seed), int(default), zlib.crc32(name.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def seed_overrides(params: Mapping[str, Any], seed: int, names: Sequence[str]
                   ) -> dict[str, int]:
    """Dotted ``--params`` overrides of the seed parameters ``names`` for replicate ``seed``.

    Empty for seed 0 (the parameters as they are); a parameter absent from ``params`` has
    default 0 (that of its dataclass).
    """
    if seed == 0:
        return {}
    return {name: derived_seed(seed, int(get_path(params, name, 0) or 0), name)
            for name in names}


def spread(per_seed: Mapping[Any, float | None]) -> dict[str, Any]:
    """Per-seed values and their ``n``, mean, std (ddof=1, None below 2 values), min and max.

    Missing values (None, NaN: a seed that never reached a target, an unfinished campaign)
    are kept in ``per_seed`` and left out of the statistics.
    """
    vals = [float(v) for v in per_seed.values() if v is not None and not math.isnan(float(v))]
    arr = np.asarray(vals)
    return {"per_seed": {str(k): (None if v is None or math.isnan(float(v)) else float(v))
                         for k, v in per_seed.items()},
            "n": len(vals),
            "mean": float(arr.mean()) if vals else None,
            "std": float(arr.std(ddof=1)) if len(vals) >= 2 else None,
            "min": float(arr.min()) if vals else None,
            "max": float(arr.max()) if vals else None}


def _curve_stats(curves: Mapping[int, Mapping[str, list]], column: str) -> dict[str, Any]:
    """Mean, std, min, max of one curve column over seeds, iteration by iteration."""
    length = max(len(c["n_labels"]) for c in curves.values())
    rows = [spread({s: (c[column][i] if column in c and i < len(c[column]) else None)
                    for s, c in curves.items()}) for i in range(length)]
    out = {key: [r[key] for r in rows] for key in ("n", "mean", "std", "min", "max")}
    out["per_seed"] = {str(s): list(c.get(column, [])) for s, c in curves.items()}
    return out


def aggregate_seeds(by_seed: Mapping[int, Mapping[str, Mapping[str, Any]]],
                    reference_method: str = "random") -> dict[str, Any]:
    """Every method over replicate seeds: ``by_seed`` is ``{seed: {method: method_result}}``.

    Curves are aligned by iteration (the same label count unless a label failed or a pick
    was a duplicate; ``n_labels`` is the mean, ``n_labels_per_seed`` each seed's). Per method
    and iteration: per-seed values, mean, std, min and max of the :data:`AGGREGATED` columns
    and of each subset's errors; per seed, with the same statistics: the labels to reach the
    reference method's mean final force MAE (all test frames and the path subset; the final
    point of its mean curve), the acquired labels that is as a fraction of the reference's,
    the labels until the NEB barrier is within 1 kcal/mol, Ramachandran coverage, a crystal's
    explored volume range (Å³) and wall time (s).
    """
    methods = list(dict.fromkeys(m for results in by_seed.values() for m in results))
    agg: dict[str, Any] = {}
    for method in methods:
        runs = {s: res[method] for s, res in by_seed.items() if method in res}
        curves = {s: r["curve"] for s, r in runs.items()}
        cols = [c for c in dict.fromkeys(k for c in curves.values() for k in c)
                if c in AGGREGATED or c.endswith(SUBSET_METRICS)]
        n_labels = _curve_stats(curves, "n_labels")
        agg[method] = {
            "seeds": [int(s) for s in runs],
            "n_labels": n_labels["mean"], "n_labels_per_seed": n_labels["per_seed"],
            "curves": {c: _curve_stats(curves, c) for c in cols},
            "final": {c: spread({s: r["final"].get(c) for s, r in runs.items()}) for c in cols},
            "labels_initial": spread({s: r["labels_initial"] for s, r in runs.items()}),
            "labels_total": spread({s: r["labels_total"] for s, r in runs.items()}),
            "wall_time_s": spread({s: r.get("wall_time_s") for s, r in runs.items()}),
        }
        if any("ramachandran_coverage" in r for r in runs.values()):
            agg[method]["ramachandran_coverage"] = spread(
                {s: r.get("ramachandran_coverage") for s, r in runs.items()})
        if any("explored_volume" in r for r in runs.values()):
            agg[method]["explored_volume_A3"] = {k: spread(
                {s: r["explored_volume"][k] for s, r in runs.items()}) for k in ("min", "max")}
    ref = agg.get(reference_method)
    targets = {}
    if ref is not None:
        for key, col in (("force_mae_ev_per_a", "force_mae_ev_per_a"),
                         ("path_force_mae_ev_per_a", "path_force_mae_ev_per_a")):
            means = ref["curves"].get(col, {}).get("mean", [])
            targets[key] = means[-1] if means else None
        acquired = (ref["labels_total"]["mean"] or 0.0) - (ref["labels_initial"]["mean"] or 0.0)
    for method, entry in agg.items():
        runs = {s: res[method] for s, res in by_seed.items() if method in res}
        frames = {s: pd.DataFrame(r["curve"]) for s, r in runs.items()}
        if ref is not None:
            need = {s: _reach(f, targets["force_mae_ev_per_a"], "force_mae_ev_per_a")
                    for s, f in frames.items()}
            entry["labels_to_reach_reference_final"] = spread(need)
            entry["acquired_fraction_of_reference"] = spread(
                {s: (None if n is None or acquired <= 0
                     else max(n - runs[s]["labels_initial"], 0.0) / acquired)
                 for s, n in need.items()})
            entry["labels_to_reach_reference_final_path"] = spread(
                {s: _reach(f, targets["path_force_mae_ev_per_a"], "path_force_mae_ev_per_a")
                 for s, f in frames.items()})
        if any("labels_to_barrier_within_1_kcal_mol" in r for r in runs.values()):
            entry["labels_to_barrier_within_1_kcal_mol"] = spread(
                {s: r.get("labels_to_barrier_within_1_kcal_mol") for s, r in runs.items()})
    return {"reference_method": reference_method if ref is not None else None,
            "reference_mean_final_force_mae_ev_per_a": targets.get("force_mae_ev_per_a"),
            "reference_mean_final_path_force_mae_ev_per_a": targets.get(
                "path_force_mae_ev_per_a"),
            "methods": agg}


def _reach(curve: pd.DataFrame, target: float | None, column: str) -> float | None:
    """:func:`labels_to_reach` of a curve, None without target or column."""
    if target is None or column not in curve:
        return None
    curve = curve.dropna(subset=[column])
    return labels_to_reach(curve, target, column) if len(curve) else None
