"""The shipped small reactions, from configuration alone: QM NEB at their level, short campaign.

For each system (default: the three small examples ``hcn_hnc``, ``malonaldehyde``,
``vinyl_alcohol_acetaldehyde``):

1. ``kedro run --pipelines data_engineering`` at the system's own level of theory (data under
   ``data/reactions/<system>/``): band check and repair, xTB prerelaxation, QM climbing-image
   NEB. Reported: converged, NEB steps, band repair, failed images, barrier (kcal/mol).
2. A short campaign (``--iterations`` × ``--batch-size`` acquired labels) with the level
   replaced by GFN2-xTB (``benchmark.levels.xtb``; data under ``data/reactions/<system>_xtb/``):
   the whole loop on the new chemistry. Reported: its learning curve (labels, force MAE
   overall and on the path, energy MAE, barrier error against the xTB NEB).

Writes ``benchmarks/results/reactions.json``; prints a table.

    python benchmarks/reactions.py [--systems hcn_hnc,malonaldehyde] [--iterations 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _results import write_result

from reactive_al.benchmark import campaign_params, kedro_run, param_arg
from reactive_al.settings import load_catalog, load_parameters

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["hcn_hnc", "malonaldehyde", "vinyl_alcohol_acetaldehyde"]
CURVE_COLUMNS = {"n_labels": "n_labels", "test/force_mae_ev_per_a": "force_mae_ev_per_a",
                 "test/path/force_mae_ev_per_a": "path_force_mae_ev_per_a",
                 "test/energy_mae_mev_per_atom": "energy_mae_mev_per_atom",
                 "test/neb/barrier_error_kcal_mol": "neb_barrier_error_kcal_mol"}


def reference_path(system: str, log: Path) -> dict:
    """Run data_engineering at the system's level; its NEB statistics and wall time (s)."""
    root = Path("data/reactions") / system
    wall = kedro_run(ROOT, ["--pipelines", "data_engineering", "--only-missing-outputs",
                            "--params", param_arg({"system": system, "data_root": str(root)})],
                     log)
    stats = json.loads((ROOT / root / "08_reporting/reference_path.json").read_text())
    params = load_parameters(ROOT)
    return {"level_of_theory": params["systems"][system].get("level_of_theory"),
            "wall_time_s": round(wall, 1), **stats}


def short_campaign(system: str, iterations: int, batch_size: int, log: Path) -> dict:
    """A campaign at GFN2-xTB (the same code path, only the oracle differs); its curve."""
    params = load_parameters(ROOT)
    root = Path("data/reactions") / f"{system}_xtb"
    args = campaign_params(params, system, root, 0, None, "xtb",
                           {"active_learning.n_iterations": iterations,
                            "selection.batch_size": batch_size})
    wall = kedro_run(ROOT, ["--only-missing-outputs", "--params", param_arg(args)], log)
    catalog = load_catalog(ROOT, None, {"data_root": str(root)})
    curve = catalog.load("learning_curve")
    cols = [c for c in CURVE_COLUMNS if c in curve.columns]
    curve = curve[cols].rename(columns=CURVE_COLUMNS)
    return {"level_of_theory": params["benchmark"]["levels"]["xtb"], "iterations": iterations,
            "batch_size": batch_size, "wall_time_s": round(wall, 1),
            "learning_curve": curve.to_dict(orient="list")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(EXAMPLES))
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-campaign", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out_path = ROOT / "benchmarks/results/reactions.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for system in args.systems.split(","):
        log = ROOT / "data/reactions" / f"{system}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        entry = {"reference_path": reference_path(system, log),
                 "load_average": os.getloadavg()}
        if not args.skip_campaign:
            entry["campaign_xtb"] = short_campaign(system, args.iterations, args.batch_size,
                                                   log)
        entry["load_average_end"] = os.getloadavg()
        entry["wall_time_s"] = round(time.perf_counter() - start, 1)
        results[system] = entry
        ref = entry["reference_path"]
        band = ref.get("band", {})
        print(f"{system}: NEB converged={ref['converged']} steps={ref['steps']} "
              f"barrier={ref['barrier_kcal_mol']:.2f} kcal/mol band repaired="
              f"{band.get('repaired')} failed images={len(ref.get('image_failures', []))}")
        if "campaign_xtb" in entry:
            curve = entry["campaign_xtb"]["learning_curve"]
            print(f"  xTB campaign: labels {curve['n_labels']} force MAE "
                  f"{[round(v, 3) for v in curve['force_mae_ev_per_a']]} eV/Å")
        write_result("reactions", results)


if __name__ == "__main__":
    main()
