"""Issue #15: a corpus of bad inputs, each ending the run in one line with nothing computed changed.

Every case runs on a copy of one finished tiny campaign (``finished_campaign``) and must give a
non-zero exit, a message that is one line starting with ``reactive_al: `` (and naming the
problem), no ``Traceback`` in the output, and no change to what was computed.

What "changed" means depends on when the run is stopped:

* ``stage="pre"``, rejected before any node runs (parameters, configuration files, the system
  definition, the identity of the data folders): the files under ``data/`` and ``mlruns/``
  (the MLflow artifacts) must be the same files with the same bytes, and ``mlflow.db`` must be
  byte-identical; such a run never opens an MLflow run.
* ``stage="node"``, stopped while the pipeline runs (a damaged dataset, the failure budget, an
  unwritable label cache or folder): kedro-mlflow has opened a run and it ends FAILED, so
  ``mlflow.db`` changes. There every file present before keeps its bytes, except the label
  cache, which must keep every label it held (key, energy, forces); new files may appear (what
  the run computed before it stopped, e.g. another label cache); every MLflow run FINISHED
  before keeps its status, end time, parameters and metrics, and no other run is FINISHED or
  RUNNING after (a pipeline stopped twice goes on in its FAILED run: it ends FAILED again).

The cases run in-process, in a Kedro session of the copied project (about 0.3 s each, against
5-10 s of imports for a ``kedro run`` process). ``test_in_process_is_the_cli`` runs one case of
each kind (parameter, system, configuration file, dataset, node failure) through ``kedro run``
as well and compares the lines; ``REACTIVE_AL_CORPUS=cli`` runs every case through
``kedro run`` instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reactive_al.nested import flatten

from .conftest import OVERLAPPING_H3, cache_labels, kedro, permissions_enforced

pytestmark = pytest.mark.slow

#: A file's new content: text or bytes, None (the file is deleted) or a function of its bytes.
Content = str | bytes | None | Callable[[bytes], bytes]

CLI = os.environ.get("REACTIVE_AL_CORPUS") == "cli"
REACTANT = "data/01_raw/h3_exchange/reactant.xyz"
PRODUCT = "data/01_raw/h3_exchange/product.xyz"
LABELED = "data/03_primary/labeled_set.extxyz"
COMMITTEE = "data/06_models/committee.pt"
CACHE = "data/02_intermediate/label_cache.db"


@dataclass(frozen=True)
class Case:
    """A bad input: what is broken, how the run is started, what its one line must say."""

    id: str
    expect: str | re.Pattern  # part of the one line, or a pattern it matches
    params: dict[str, Any] = field(default_factory=dict)  # --params
    files: dict[str, Content] = field(default_factory=dict)  # project-relative path → content
    pipeline: str | None = None  # --pipelines
    env: str | None = None  # --env
    stage: str = "pre"  # see the module docstring
    modes: dict[str, int] = field(default_factory=dict)  # chmod of folders (non-root only)

    def cli_args(self) -> list[str]:
        args = ["--pipelines", self.pipeline] if self.pipeline else []
        args += ["--env", self.env] if self.env else []
        if self.params:
            items = flatten(self.params, sep=".").items()
            assert not any("," in str(v) for _, v in items), f"{self.id}: not for --params"
            args += ["--params", ",".join(f"{k}={_cli_value(v)}" for k, v in items)]
        return args


def _cli_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _system(**spec: Any) -> dict[str, Any]:
    """``--params`` defining and selecting a system ``bad``: h3_exchange's, ``spec`` applied."""
    base = {"reactant": REACTANT, "charge": 0, "multiplicity": 2,
            "level_of_theory": {"method": "hf", "basis": "sto-3g"}}
    return {"system": "bad", "systems": {"bad": {k: v for k, v in {**base, **spec}.items()
                                                 if v is not None}}}


def _h3(level: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """``--params`` changing the h3_exchange definition."""
    entry = {**spec, **({"level_of_theory": level} if level else {})}
    return {"systems": {"h3_exchange": entry}}


def _frames(n: int) -> Callable[[bytes], bytes]:
    """The first ``n`` frames of an extxyz file (cut at a frame boundary)."""
    def cut(data: bytes) -> bytes:
        lines = data.decode().splitlines(keepends=True)
        out, i = [], 0
        for _ in range(n):
            size = int(lines[i]) + 2
            out += lines[i:i + size]
            i += size
        return "".join(out).encode()
    return cut


def _lines(n: int) -> Callable[[bytes], bytes]:
    return lambda data: b"".join(data.splitlines(keepends=True)[:n])


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _random(data: bytes) -> bytes:
    return np.random.default_rng(0).bytes(max(len(data), 4096))


SYSTEMS = [
    Case("unknown_system", "unknown system 'nope' (defined: ", {"system": "nope"}),
    Case("system_not_a_mapping", "systems.bad: must be a mapping",
         {"system": "bad", "systems": {"bad": REACTANT}}),
    Case("missing_charge", "systems.bad: missing required key 'charge'", _system(charge=None)),
    Case("missing_multiplicity", "missing required key 'multiplicity'",
         _system(multiplicity=None)),
    Case("missing_reactant", "missing required key 'reactant'", _system(reactant=None)),
    Case("missing_geometry_file", "data/01_raw/nope.xyz: geometry file not found",
         _h3(reactant="data/01_raw/nope.xyz")),
    Case("geometry_path_is_a_folder", "data/01_raw/h3_exchange: a directory, not a geometry",
         _h3(reactant="data/01_raw/h3_exchange")),
    Case("empty_geometry_file", "reactant.xyz: cannot read geometry (Empty file",
         files={REACTANT: ""}),
    Case("geometry_without_atoms", "reactant.xyz: empty structure", files={REACTANT: "0\n\n"}),
    Case("unparsable_geometry", "reactant.xyz: cannot read geometry (",
         files={REACTANT: "this is not\na geometry\n"}),
    Case("geometry_cut_short", "Frame has 2 atoms, expected 3",
         files={REACTANT: "3\n\nH 0 0 0\nH 0.74 0 0\n"}),
    Case("nan_coordinate", "reactant.xyz: non-finite (NaN/inf) coordinates",
         files={REACTANT: "3\n\nH 0 0 0\nH nan 0 0\nH 2.54 0 0\n"}),
    Case("infinite_coordinate", "reactant.xyz: non-finite",
         files={REACTANT: "3\n\nH 0 0 0\nH inf 0 0\nH 2.54 0 0\n"}),
    Case("unknown_element", "reactant.xyz: unknown element 'Xq'",
         files={REACTANT: "3\n\nH 0 0 0\nXq 0.74 0 0\nH 2.54 0 0\n"}),
    Case("atoms_overlap", "reactant.xyz: atoms 0 (H) and 1 (H) are 0.100 Å apart",
         files={REACTANT: OVERLAPPING_H3}),
    Case("charge_multiplicity_parity", "are impossible with 3 electrons (parity)",
         _h3(multiplicity=1)),
    Case("multiplicity_zero", "spin multiplicity must be >= 1, got 0", _h3(multiplicity=0)),
    Case("crystal_with_a_molecular_program", "program 'pyscf' labels molecules only",
         {"system": "argon_fcc", "systems": {"argon_fcc": {"level_of_theory": {
             "program": "pyscf", "method": "hf", "basis": "sto-3g"}}}}),
    Case("crystal_narrower_than_the_cutoff", "is below the model's radial cutoff 6.0 Å",
         {"system": "argon_fcc", "training": {"model": {"radial_cutoff": 6.0}}}),
    Case("test_path_of_a_molecule", "systems.h3_exchange.test_path: a cell path needs a "
         "crystal reactant", _h3(test_path={"to": PRODUCT})),
    Case("test_path_to_other_atoms", "atoms differ from the reactant",
         {"system": "argon_fcc", "systems": {"argon_fcc": {"test_path": {
             "to": "data/01_raw/mil53_al/lp.extxyz"}}}}),
    Case("test_path_unknown_key", "test_path: unknown keys ['images']",
         {"system": "argon_fcc", "systems": {"argon_fcc": {"test_path": {
             "to": "data/01_raw/argon_fcc/crystal.extxyz", "images": 3}}}}),
    Case("crystal_with_a_baseline", "training.baseline: not available for crystals yet",
         {"system": "argon_fcc", "training": {"baseline": "xtb"}}),
    Case("charge_not_an_integer", "charge and multiplicity must be integers",
         _h3(charge="minus one")),
    Case("charge_leaves_no_electrons", "charge 5 leaves -2 electrons", _h3(charge=5)),
    Case("unknown_level_key", "unknown setting(s) ['functional'] for program 'pyscf'",
         _h3({"functional": "pbe"})),
    Case("unknown_basis", "basis 'no-such-basis' has no functions for H",
         _h3({"basis": "no-such-basis"})),
    Case("misspelt_functional", "unknown method 'b3lpy'", _h3({"method": "b3lpy"})),
    Case("unknown_program", "unknown program 'orca' (registered: ", _h3({"program": "orca"})),
    Case("product_atom_mismatch", "product.xyz: atoms differ from the reactant",
         files={PRODUCT: "5\n\nH 0 0 0\nH 0.74 0 0\nH 2.54 0 0\nH 5 0 0\nH 6 0 0\n"}),
    Case("missing_ts_guess", "data/01_raw/ts.xyz: geometry file not found",
         _h3(ts_guess="data/01_raw/ts.xyz")),
    Case("intermediates_not_a_list", "systems.bad.intermediates: a list of geometry files",
         _system(product=PRODUCT, intermediates=PRODUCT)),
    Case("other_level_on_the_data_folder", "data_identity.json: this folder holds the data of "
         "system 'h3_exchange', which differs from this run in level_of_theory",
         _h3({"basis": "3-21g"})),
    Case("other_settings_on_the_campaign_folder", "campaign_identity.json: this folder holds "
         "the campaign of system 'h3_exchange', which differs from this run in settings",
         {"training": {"fit": {"max_epochs": 61}}}),
]

PARAMETERS = [
    Case("unknown_labeling_setting", "labeling: unknown settings ['bias'] (known: ",
         {"labeling": {"bias": 1}}),
    Case("unknown_training_fit_setting", "training.fit: unknown settings ['epochs']",
         {"training": {"fit": {"epochs": 10}}}),
    Case("unknown_walker_setting", "selection.walkers: unknown settings ['pressure_bar']",
         {"selection": {"walkers": {"pressure_bar": 2500}}}),
    Case("pressures_not_numbers", "pressures_bar: must be a non-empty list of pressures",
         {"selection": {"walkers": {"pressures_bar": ["high"]}}}),
    Case("unknown_strategy", "selection.strategy: unknown strategy 'best' (registered: top_k",
         {"selection": {"strategy": "best"}}),
    Case("unknown_uncertainty", "unknown uncertainty 'comittee'",
         {"selection": {"uncertainty": {"method": "comittee"}}}),
    Case("unknown_criterion", "selection.criterion: unknown criterion 'forse'",
         {"selection": {"criterion": "forse"}}),
    Case("unknown_sampler", "unknown sampler(s) ['nope'] under selection.samplers",
         {"selection": {"samplers": {"nope": {"enabled": True}}}}),
    Case("list_for_a_mapping", "--params selection.samplers: a list where the configuration "
         "has a mapping", {"selection": {"samplers": ["neb"]}}),
    Case("block_not_a_mapping", "parameters_training.yml: training: must be a mapping",
         {"training": "fast"}),
    Case("negative_batch_size", "selection.batch_size: must be a positive integer, got -3",
         {"selection": {"batch_size": -3}}),
    Case("zero_batch_size", "selection.batch_size: must be a positive integer, got 0",
         {"selection": {"batch_size": 0}}),
    Case("zero_training_batch_size", "training.fit.batch_size: must be an integer >= 1",
         {"training": {"fit": {"batch_size": 0}}}),
    Case("zero_workers", "labeling.n_workers: must be an integer >= 1, got 0",
         {"labeling": {"n_workers": 0}}),
    Case("workers_not_a_number", "labeling.n_workers: must be an integer >= 1, got 'two'",
         {"labeling": {"n_workers": "two"}}),
    Case("zero_iterations", "active_learning.n_iterations: must be an integer >= 1, got 0",
         {"active_learning": {"n_iterations": 0}}),
    Case("iterations_not_a_number", "n_iterations: must be an integer >= 1, got 'five'",
         {"active_learning": {"n_iterations": "five"}}),
    Case("no_temperatures", "selection.walkers.temperatures_K: must be a non-empty list",
         {"selection": {"walkers": {"temperatures_K": []}}}),
    Case("negative_temperature", "temperatures > 0 K, got [-5]",
         {"selection": {"walkers": {"temperatures_K": [-5]}}}),
    Case("temperatures_not_a_list", "data_engineering.thermal.temperatures_K: must be a "
         "non-empty list", {"data_engineering": {"thermal": {"temperatures_K": "300"}}}),
    Case("failure_budget_above_one", "labeling.max_failure_fraction: must be a number >= 0 "
         "and <= 1, got 1.5", {"labeling": {"max_failure_fraction": 1.5}}),
    Case("zero_learning_rate", "training.fit.learning_rate: must be a number > 0",
         {"training": {"fit": {"learning_rate": 0}}}),
    Case("negative_timeout", "labeling.timeout_s: must be a number > 0 (or null)",
         {"labeling": {"timeout_s": -1}}),
    Case("unknown_scheduler", "labeling.scheduler: must be local, synchronous, slurm or a "
         "scheduler address", {"labeling": {"scheduler": "lokal"}}),
    Case("empty_search_space_range", "parameters_tuning.yml: tuning.search_space."
         "selection.batch_size: need low < high", files={
             "conf/local/parameters_case.yml": "tuning:\n  search_space:\n    selection."
             "batch_size: {type: int, low: 8, high: 2}\n"}),
]

CONFIGURATION = [
    # PyYAML 6.0.4 names the character (found character '\t' that ...), earlier ones do not
    Case("yaml_tab", re.compile(r"conf/local/parameters_case\.yml: invalid YAML \(line 2, "
                                r"column 1: found character ('\\t' )?that cannot start any "
                                r"token\); indent with spaces, not tabs"),
         files={"conf/local/parameters_case.yml": "selection:\n\tbatch_size: 8\n"}),
    Case("yaml_indentation", "parameters_case.yml: invalid YAML (line 3, column 12: mapping "
         "values are not allowed", files={
             "conf/local/parameters_case.yml": "selection:\n  batch_size: 8\n   strategy: x\n"}),
    Case("yaml_catalog", "conf/local/catalog_case.yml: invalid YAML (line 3",
         files={"conf/local/catalog_case.yml": "x:\n  type: [\n"}),
    Case("yaml_mlflow", "conf/local/mlflow.yml: invalid YAML (line ",
         files={"conf/local/mlflow.yml": "server: [\n"}),
    Case("unknown_mlflow_setting", "conf/local/mlflow.yml: server.nonsense: Extra inputs are "
         "not permitted", files={"conf/local/mlflow.yml":
                                 "server:\n  mlflow_tracking_uri: sqlite:///mlflow.db\n"
                                 "  nonsense: 1\n"}),
    Case("key_in_two_files", "labeling.scheduler (set in both files); set each key in one",
         files={"conf/local/parameters_case.yml": "labeling:\n  scheduler: local\n"}),
    Case("unknown_environment", "conf/nosuch: no such configuration environment (--env "
         "nosuch); environments: base, ", env="nosuch"),
    Case("unknown_pipeline", "--pipelines: unknown pipeline 'trainig' (did you mean training",
         pipeline="trainig"),
    Case("catalog_unknown_dataset_type", "conf/local/catalog_case.yml: dataset 'labeled_set': "
         "No module named 'nosuch'", files={"conf/local/catalog_case.yml":
                                            "labeled_set:\n  type: nosuch.Dataset\n"
                                            "  filepath: x\n"}, pipeline="training"),
    Case("catalog_entry_without_path", "dataset 'learning_curve': CSVDataset.__init__() "
         "missing 1 required keyword-only argument: 'filepath'", files={
             "conf/local/catalog_case.yml": "learning_curve:\n  type: pandas.CSVDataset\n"}),
]

DATASETS = [
    Case("labeled_set_cut_at_a_frame_boundary", "labeled_set.extxyz: truncated (3 of 12 "
         "frames); remove the file to recompute it", files={LABELED: _frames(3)},
         pipeline="training", stage="node"),
    Case("labeled_set_cut_inside_a_frame", "labeled_set.extxyz: cannot read extxyz (",
         files={LABELED: _lines(7)}, pipeline="training", stage="node"),
    Case("labeled_set_of_random_bytes", "labeled_set.extxyz: cannot read extxyz (",
         files={LABELED: _random}, pipeline="training", stage="node"),
    Case("labeled_set_missing", "labeled_set.extxyz: file not found", files={LABELED: None},
         pipeline="training", stage="node"),
    Case("checkpoint_truncated", "committee.pt: unreadable committee checkpoint (truncated, "
         "or not a torch checkpoint); remove it to retrain", files={COMMITTEE: _half},
         pipeline="selection", stage="node"),
    Case("checkpoint_of_random_bytes", "committee.pt: unreadable committee checkpoint "
         "(truncated, or not a torch checkpoint)", files={COMMITTEE: _random},
         pipeline="selection", stage="node"),
    Case("checkpoint_empty", "committee.pt: unreadable committee checkpoint (empty file)",
         files={COMMITTEE: b""}, pipeline="evaluation", stage="node"),
    Case("test_set_truncated", "test_set.extxyz: truncated (3 of 18 frames)",
         files={"data/03_primary/test_set.extxyz": _frames(3)}, pipeline="evaluation",
         stage="node"),
    Case("reference_path_truncated", "reference_path.extxyz: truncated (2 of 5 frames)",
         files={"data/03_primary/reference_path.extxyz": _frames(2)}, pipeline="evaluation",
         stage="node"),
    Case("failure_budget_exceeded", "label_test_pool: 18 of 18 structures failed (timeout), "
         "more than the failure budget 50%; finished labels are cached",
         {"labeling": {"cache_path": "data/02_intermediate/other_cache.db",
                       "timeout_s": 1e-9}}, pipeline="labeling", stage="node"),
    Case("reactant_fails_at_the_qm_level", "h3_exchange: QM reference path: the reactant "
         "fails at the QM level (timeout", {"data_root": "data/other", "labeling": {
             "cache_path": "data/other/label_cache.db", "timeout_s": 1e-9}},
         pipeline="data_engineering", stage="node"),
    Case("label_cache_path_under_a_file", "cannot write the label cache "
         f"{LABELED}/cache.db ({LABELED} is not a directory); point labeling.cache_path to a "
         "writable place", {"labeling": {"cache_path": f"{LABELED}/cache.db"}},
         pipeline="labeling", stage="node"),
    Case("label_cache_path_is_a_folder", "cannot write the label cache data/02_intermediate "
         "(data/02_intermediate is a directory)",
         {"labeling": {"cache_path": "data/02_intermediate"}}, pipeline="labeling",
         stage="node"),
]

PERMISSIONS = [
    Case("read_only_label_cache_folder", f"cannot write the label cache {CACHE} (permission "
         "denied in data/02_intermediate); point labeling.cache_path to a writable place",
         modes={"data/02_intermediate": 0o555}, pipeline="labeling", stage="node"),
    Case("read_only_results_folder", "labeled_set_0.extxyz: cannot write (Permission denied);"
         " make", modes={"data/03_primary": 0o555}, pipeline="labeling", stage="node"),
]

CASES = SYSTEMS + PARAMETERS + CONFIGURATION + DATASETS + PERMISSIONS
#: one case of each kind, also run through ``kedro run``
CLI_CASES = ["zero_workers", "atoms_overlap", "yaml_tab", "labeled_set_cut_at_a_frame_boundary",
             "failure_budget_exceeded"]


# ------------------------------------------------------------------------ what a case changes


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(project: Path) -> dict[str, str]:
    """sha256 of every file under ``data/`` and ``mlruns/``, and of ``mlflow.db``."""
    out = {str(p.relative_to(project)): _hash(p) for root in ("data", "mlruns")
           for p in sorted((project / root).rglob("*")) if p.is_file()}
    out["mlflow.db"] = _hash(project / "mlflow.db")
    return out


def _runs(db: Path) -> dict[str, tuple]:
    """Every MLflow run: id → (status, end time, parameters, latest metrics)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        params: dict[str, list] = {}
        for run, key, value in con.execute("SELECT run_uuid, key, value FROM params"):
            params.setdefault(run, []).append((key, value))
        metrics: dict[str, list] = {}
        for run, key, value, step in con.execute(
                "SELECT run_uuid, key, value, step FROM latest_metrics"):
            metrics.setdefault(run, []).append((key, value, step))
        return {run: (status, end, sorted(params.get(run, [])), sorted(metrics.get(run, [])))
                for run, status, end in con.execute("SELECT run_uuid, status, end_time FROM runs")}


@dataclass
class State:
    files: dict[str, str]
    labels: dict[str, tuple]
    runs: dict[str, tuple]


def _state(project: Path, stage: str) -> State:
    if stage == "pre":
        return State(_files(project), {}, {})
    return State(_files(project), cache_labels(project / CACHE), _runs(project / "mlflow.db"))


def _assert_unchanged(before: State, after: State, stage: str) -> None:
    if stage == "pre":
        assert after.files == before.files
        return
    cache = {k for k in before.files if k.startswith(CACHE)}
    changed = sorted(k for k, h in before.files.items()
                     if k != "mlflow.db" and k not in cache and after.files.get(k) != h)
    assert changed == []
    assert before.labels.items() <= after.labels.items()
    finished = {r: run for r, run in before.runs.items() if run[0] == "FINISHED"}
    assert {r: after.runs.get(r) for r in finished} == finished
    others = {after.runs[r][0] for r in set(after.runs) - set(finished)}
    assert not others & {"FINISHED", "RUNNING"}, others


@contextmanager
def _applied(project: Path, case: Case) -> Iterator[None]:
    """The project with the case's files written and folder modes set; all put back after."""
    saved: dict[Path, bytes | None] = {}
    modes: dict[Path, int] = {}
    try:
        for rel, content in case.files.items():
            path = project / rel
            saved[path] = path.read_bytes() if path.exists() else None
            if callable(content):
                content = content(saved[path] or b"")
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                data = content.encode() if isinstance(content, str) else content
                path.write_bytes(data)
        for rel, mode in case.modes.items():
            path = project / rel
            modes[path] = path.stat().st_mode & 0o777
            path.chmod(mode)
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
        for path, data in saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)


# ------------------------------------------------------------------------ running a case


@pytest.fixture(scope="module")
def corpus(finished_campaign, tmp_path_factory) -> Iterator[Path]:
    """A copy of the finished campaign, bootstrapped in this process (as ``kedro run`` does).

    Bootstrapping configures Kedro's logging, which replaces the handlers of the root and
    the project's loggers: done once here, before the tests' log capture is set up. The
    process's MLflow tracking URI and environment are put back afterwards.
    """
    import mlflow
    from kedro.framework.startup import bootstrap_project

    project = tmp_path_factory.mktemp("corpus") / "project"
    shutil.copytree(finished_campaign, project)
    uri, environ = mlflow.get_tracking_uri(), dict(os.environ)
    bootstrap_project(project)
    yield project
    mlflow.set_tracking_uri(uri)
    os.environ.clear()
    os.environ.update(environ)


def _in_process(project: Path, case: Case, monkeypatch) -> str | None:  # noqa: ANN001
    """Run the case in a Kedro session of ``project``; the ``SystemExit`` message, or None.

    What a new process would start from is reset (the session's parameters, the signal
    handlers); what its exit would do is done (open MLflow runs ended, as at exit).
    """
    from kedro.framework.session import KedroSession

    from reactive_al import hooks, tracking

    monkeypatch.chdir(project)
    monkeypatch.setattr(hooks, "SESSION_PARAMETERS", None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with KedroSession.create(project_path=project, env=case.env,
                                 runtime_params=case.params or None) as session:
            session.run(pipeline_names=[case.pipeline] if case.pipeline else None)
    except SystemExit as exc:
        return str(exc.code)
    finally:
        tracking.end_open_runs()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return None


def _through_cli(project: Path, case: Case) -> tuple[int, str, str]:
    """``kedro run`` of the case: (exit code, its last line, the whole output)."""
    result = kedro(project, *case.cli_args())
    lines = result.stderr.strip().splitlines()
    return result.returncode, lines[-1] if lines else "", result.stdout + result.stderr


def _skip_if_root(case: Case) -> None:
    if case.modes and not permissions_enforced():
        pytest.skip("root ignores directory permissions")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_ends_in_one_line_and_changes_nothing(corpus, case, capfd, monkeypatch):
    _skip_if_root(case)
    with _applied(corpus, case):
        before = _state(corpus, case.stage)
        if CLI:
            code, line, output = _through_cli(corpus, case)
            assert code != 0
        else:
            line = _in_process(corpus, case, monkeypatch)
            captured = capfd.readouterr()
            output = captured.out + captured.err
            assert line is not None, "the run was not stopped"
        after = _state(corpus, case.stage)
    assert line.startswith("reactive_al: ") and "\n" not in line, line
    if isinstance(case.expect, re.Pattern):
        assert case.expect.search(line), line
    else:
        assert case.expect in line, line
    assert "Traceback" not in output
    _assert_unchanged(before, after, case.stage)


@pytest.mark.skipif(CLI, reason="every case runs through kedro run already")
@pytest.mark.parametrize("case", [c for c in CASES if c.id in CLI_CASES], ids=lambda c: c.id)
def test_in_process_is_the_cli(corpus, case, capfd, monkeypatch):
    """The in-process session stops with the line ``kedro run`` prints last, exit code 1."""
    with _applied(corpus, case):
        line = _in_process(corpus, case, monkeypatch)
        capfd.readouterr()
        code, last, output = _through_cli(corpus, case)
    assert code == 1 and "Traceback" not in output
    assert last == line


def test_a_label_cache_of_random_bytes_is_set_aside_and_the_run_goes_on(corpus, capfd, caplog,
                                                                       monkeypatch):
    """Not a rejection: the damaged cache is moved aside (bytes kept) and its labels computed
    again, the same; one warning line names both files; nothing but the labeling results and
    the cache changes."""
    from ase.io import read

    cache = corpus / CACHE
    outputs = ["data/03_primary/labeled_set_0.extxyz", "data/03_primary/test_set.extxyz"]

    def energies() -> dict[str, float]:
        return {a.info["label_key"]: a.get_potential_energy()
                for name in outputs for a in read(corpus / name, index=":")}

    garbage = _random(b"")
    old = energies()
    saved = {p: p.read_bytes() for p in (cache, *(corpus / o for o in outputs))}
    try:
        with _applied(corpus, Case("random_cache", "", files={CACHE: garbage})):
            before = _files(corpus)
            line = _in_process(corpus, Case("random_cache", "", pipeline="labeling"),
                               monkeypatch)
            captured = capfd.readouterr()
            after = _files(corpus)
            (aside,) = cache.parent.glob("label_cache.db.damaged-*[0-9]")
            assert aside.read_bytes() == garbage
            new = energies()
            aside.unlink()
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
        for extra in cache.parent.glob("label_cache.db-*"):
            extra.unlink()
    assert line is None and "Traceback" not in captured.out + captured.err
    (warning,) = [r.getMessage() for r in caplog.records if "label cache damaged" in
                  r.getMessage()]
    assert warning.startswith(f"{CACHE}: label cache damaged (file is not a database); moved "
                              f"aside to {aside.name}, 0 readable labels kept")
    assert "\n" not in warning
    assert new.keys() == old.keys()
    assert all(abs(new[k] - old[k]) < 1e-6 for k in old)
    changed = {k for k in before if after.get(k) != before[k]} | set(after) - set(before)
    allowed = {CACHE, *outputs, "mlflow.db", f"data/02_intermediate/{aside.name}",
               "data/03_primary/label_failures_initial.json",
               "data/03_primary/label_failures_test.json"}
    assert {k for k in changed if not k.startswith("mlruns/")} <= allowed
