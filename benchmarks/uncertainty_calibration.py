"""Committee spread vs gradient-feature uncertainty, scored on the same models and test set.

For every committee of a query-method comparison (``make benchmark SYSTEM=<name>``, under
``data/benchmark/<system>/``), both uncertainties are calibrated on the committee's own
validation split (one Gaussian maximum-likelihood scale each) and scored against the
per-atom energy errors on the shared test set: Spearman rank correlation with the error,
coverage of the nominal 95% interval and miscalibration area (``calibration_metrics``).
The committee's force spread is scored too. No QM is run: the labels are those the
campaigns computed. Writes benchmarks/results/uncertainty_calibration_<system>.json.

    python benchmarks/uncertainty_calibration.py --system sn2_cl_ch3cl [--root data/benchmark]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _results import write_result

from reactive_al.benchmark import campaign_catalog
from reactive_al.evaluation import calibration_metrics
from reactive_al.settings import load_parameters

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"committee_energy": "calibration/energy_", "gf_energy": "calibration/gf_energy_",
        "committee_force": "calibration/force_"}
SCORES = ("spearman", "coverage_95", "miscalibration_area")


def iterations(catalog):
    """(iteration, committee, labeled set) of a campaign's trained committees (its catalog)."""
    for k in range(100):
        models, labeled = f"iter_{k:02d}.committee", f"labeled_set_{k}"
        if not (catalog.exists(models) and catalog.exists(labeled)):
            return
        yield k, catalog.load(models), catalog.load(labeled)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--root", default="data/benchmark", help="benchmark data root")
    args = parser.parse_args()
    params = load_parameters(ROOT)
    gf = dict(params["evaluation"]["calibration"]["gradient_features"], enabled=True)
    root = Path(args.root) / args.system
    shared = ROOT / root
    test_set = campaign_catalog(ROOT, root).load("test_set")
    methods = [m for m in params["benchmark"]["methods"] if (shared / m).is_dir()]
    if not methods:
        raise SystemExit(f"{shared}: no campaign of a benchmark method to score")
    per_method: dict[str, dict] = {}
    for method in methods:
        rows = []
        for k, committee, labeled_set in iterations(campaign_catalog(ROOT, root, method)):
            m = calibration_metrics(committee, test_set, labeled_set, gradient_features=gf)[0]
            row = {"iteration": k, "n_labels": len(labeled_set)}
            row.update({f"{name}_{s}": round(float(m[prefix + s]), 4)
                        for name, prefix in KEYS.items() for s in SCORES})
            rows.append(row)
            print(f"{method:>18s} iter {k}: Spearman committee energy "
                  f"{row['committee_energy_spearman']:+.2f}, gradient features "
                  f"{row['gf_energy_spearman']:+.2f}, committee force "
                  f"{row['committee_force_spearman']:+.2f}")
        per_method[method] = {"iterations": rows}
    # iteration 0 is shared: count it once in the means over all committees
    every = [r for rows in per_method.values() for r in rows["iterations"] if r["iteration"]]
    every += next(iter(per_method.values()))["iterations"][:1]
    means = {f"{name}_{s}": round(float(np.mean([r[f"{name}_{s}"] for r in every])), 4)
             for name in KEYS for s in SCORES}
    wins = sum(r["gf_energy_spearman"] > r["committee_energy_spearman"] for r in every)
    result = {"system": args.system, "n_test": len(test_set), "n_committees": len(every),
              "gradient_features": gf, "mean_over_committees": means,
              "gf_energy_spearman_higher_in": wins, "methods": per_method}
    print(f"mean over {len(every)} committees: " + ", ".join(f"{k} {v}" for k, v in
                                                                 means.items()))
    write_result(f"uncertainty_calibration_{args.system}", result)


if __name__ == "__main__":
    main()
