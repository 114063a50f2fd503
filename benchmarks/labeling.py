"""Labeling overhead and parallel efficiency on the SN2 system at its default level.

Measures, on the same displaced SN2 structures, each time with an empty cache:
  raw       PySCF single points in a plain loop (one thread), the cost of the QM alone;
  pipeline  ``label_structures`` with one in-process worker (validation, hashing, cache I/O);
  parallel  ``label_structures`` on a Dask LocalCluster of 2 single-thread workers.
Overhead = pipeline/raw − 1 (target ≤ 5%); parallel efficiency = pipeline / (2 × parallel)
(target ≥ 85%). Prints a table and writes benchmarks/results/labeling.json.

    python benchmarks/labeling.py [--n 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _results import write_result
from ase.io import read

from reactive_al.oracles import single_point
from reactive_al.oracles.cluster import dask_client
from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.systems import load_system

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8, help="structures per measurement")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    systems = yaml.safe_load((ROOT / "conf/base/parameters_systems.yml").read_text())["systems"]
    system = load_system("sn2_cl_ch3cl", systems, ROOT)
    level = system.level
    reactant = read(ROOT / system.reactant_file)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(args.n):
        a = reactant.copy()
        a.positions += rng.normal(0, 0.04, a.positions.shape)
        frames.append(a)

    t0 = time.perf_counter()
    for a in frames:
        single_point(a, system.charge, system.multiplicity, level, omp_threads=1)
    raw = time.perf_counter() - t0

    def pipeline(scheduler: str, n_workers: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = LabelingConfig(charge=system.charge, multiplicity=system.multiplicity,
                                 level=level, cache_path=f"{tmp}/cache.db", scheduler=scheduler,
                                 n_workers=n_workers, omp_threads=1, progress=False)
            if scheduler == "local":
                # a campaign starts its cluster once; that start-up is reported separately
                t = time.perf_counter()
                dask_client(cfg)
                result["cluster_startup_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            labeled, failures = label_structures(frames, cfg)
            assert len(labeled) == len(frames), failures
            return time.perf_counter() - t

    result: dict = {}
    serial = pipeline("synchronous", 1)
    parallel = pipeline("local", 2)
    result |= {
        "system": "sn2_cl_ch3cl",
        "level": level.as_dict(),
        "n_structures": args.n,
        "raw_s_per_label": round(raw / args.n, 3),
        "pipeline_1_worker_s_per_label": round(serial / args.n, 3),
        "pipeline_2_workers_s_per_label": round(parallel / args.n, 3),
        "overhead_fraction": round(serial / raw - 1, 4),
        "parallel_efficiency_2_workers": round(serial / (2 * parallel), 4),
    }
    for k, v in result.items():
        print(f"{k:32s} {v}")
    write_result("labeling", result)


if __name__ == "__main__":
    main()
