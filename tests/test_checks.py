"""Bad input is one line before any node runs: parameters, functionals, datasets, identity."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.checks import ParameterError, campaign_identity, check_identity, check_parameters
from reactive_al.settings import load_parameters
from reactive_al.systems import SystemDefinitionError, load_system

from .conftest import PROJECT_ROOT


def _with(params: dict, key: str, value) -> dict:
    from reactive_al.nested import set_path

    out = copy.deepcopy(params)
    set_path(out, key, value)
    return out


def test_shipped_parameters_pass(project_params):
    check_parameters(project_params)


def test_every_benchmark_method_sets_valid_parameters(project_params):
    """A method's overrides (``benchmark.methods.<m>.params``) on the defaults pass the checks."""
    from reactive_al.nested import deep_merge

    methods = project_params["benchmark"]["methods"]
    assert {"committee_delta_lookahead", "committee_delta_lookahead_warm"} <= set(methods)
    for name, method in methods.items():
        assert method.get("params"), name
        check_parameters(deep_merge(project_params, method["params"]))


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("active_learning.n_iterations", 0, "integer >= 1"),
    ("active_learning.lookahead", "yes", "true or false"),
    ("active_learning.early_first_batch", 1.5, "number > 0 and <= 1 (or null)"),
    ("selection.batch_size", -3, "positive integer"),
    ("labeling.n_workers", 0, "integer >= 1"),
    ("labeling.timeout_s", -1.0, "number > 0 (or null)"),
    ("labeling.max_failure_fraction", 1.5, "<= 1"),
    ("training.fit.learning_rate", 0.0, "number > 0"),
    ("training.fit.batch_size", 2.5, "integer >= 1"),
    ("training.fit.mode", "finetune", "one of ['retrain', 'warm_start']"),
    ("training.fit.warm_start_schedule", "cosin", "one of ['plateau', 'cosine']"),
    ("training.fit.warm_start_patience", 2.5, "integer >= 1 (or null)"),
    ("training.fit.retrain_every", 0, "integer >= 1 (or null)"),
    ("training.fit.retrain_last", "sometimes", "must be true or false"),
    ("selection.walkers.temperatures_K", [], "temperatures > 0 K"),
    ("selection.walkers.temperatures_K", [300, -5], "temperatures > 0 K"),
    ("selection.walkers.bias.tau", 0, "number > 0"),
    ("data_engineering.thermal.temperatures_K", "300", "temperatures > 0 K"),
    ("data_engineering.reference_path.repair.max_repairs", -1, "integer >= 0"),
    ("selection.uncertainty.method", "comittee", "unknown uncertainty 'comittee'"),
    ("selection.strategy", "best", "unknown strategy 'best'"),
    ("labeling.scheduler", "lokal", "or a scheduler address (tcp://host:port)"),
    ("training", "fast", "must be a mapping of settings, got 'fast'"),
    ("selection.walkers", [300], "must be a mapping of settings"),
])
def test_bad_parameter_is_one_line_naming_file_and_key(project_params, key, value, expected):
    with pytest.raises(ParameterError) as err:
        check_parameters(_with(project_params, key, value))
    msg = str(err.value)
    assert "\n" not in msg and expected in msg
    assert msg.startswith("conf/base/parameters_") and key.split(".")[-1] in msg


def test_null_timeout_and_broken_search_space(project_params):
    check_parameters(_with(project_params, "labeling.timeout_s", None))
    for address in ("tcp://10.0.0.1:8786", "tls://node:8786", "node7:8786", "slurm"):
        check_parameters(_with(project_params, "labeling.scheduler", address))
    space = {"selection.batch_size": {"type": "int", "low": 8, "high": 2}}
    with pytest.raises(ParameterError, match="parameters_tuning.yml: .*low < high"):
        check_parameters(_with(project_params, "tuning.search_space", space))


def test_misspelt_functional_is_caught_before_any_scf(tmp_path):
    (tmp_path / "w.xyz").write_text("3\n\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    spec = {"reactant": str(tmp_path / "w.xyz"), "charge": 0, "multiplicity": 1,
            "level_of_theory": {"method": "b3lpy", "basis": "sto-3g"}}
    with pytest.raises(SystemDefinitionError) as err:
        load_system("w", {"w": spec})
    assert "unknown method 'b3lpy'" in str(err.value) and "did you mean b3lyp" in str(err.value)


def test_identity_is_recorded_then_guards_the_folder(tmp_path, project_params):
    sn2 = load_system("sn2_cl_ch3cl", project_params["systems"], PROJECT_ROOT)
    h3 = load_system("h3_exchange", project_params["systems"], PROJECT_ROOT)
    ident = campaign_identity(project_params, sn2)
    check_identity(str(tmp_path), ident["data"], "data")
    check_identity(str(tmp_path), ident["data"], "data")  # same: fine
    stored = json.loads((tmp_path / "08_reporting/data_identity.json").read_text())
    assert stored["system"] == "sn2_cl_ch3cl"
    with pytest.raises(ParameterError) as err:
        check_identity(str(tmp_path), campaign_identity(project_params, h3)["data"], "data")
    msg = str(err.value)
    assert "'sn2_cl_ch3cl'" in msg and "level_of_theory" in msg and "data_root=" in msg
    assert "make clean-campaign" in msg and "\n" not in msg
    # another query setting is another campaign, the same system's data is still its data
    other = campaign_identity(_with(project_params, "selection.strategy", "random"), sn2)
    assert other["data"] == ident["data"] and other["campaign"] != ident["campaign"]


def test_the_lookahead_is_part_of_a_campaign_and_the_plain_loop_keeps_its_identity(project_params):
    """A plain-loop folder made before the lookahead became the default is not resumed by it."""
    sn2 = load_system("sn2_cl_ch3cl", project_params["systems"], PROJECT_ROOT)
    assert project_params["active_learning"]["lookahead"] is True  # the default
    ident = {v: campaign_identity(_with(project_params, "active_learning.lookahead", v), sn2)
             for v in (True, False)}
    no_key = copy.deepcopy(project_params)
    del no_key["active_learning"]["lookahead"]
    assert ident[True]["campaign"] != ident[False]["campaign"]
    assert ident[False]["campaign"] == campaign_identity(no_key, sn2)["campaign"]
    assert ident[True]["data"] == ident[False]["data"]
    # the number of iterations is not: a campaign may be extended
    longer = campaign_identity(_with(project_params, "active_learning.n_iterations", 9), sn2)
    assert longer["campaign"] == ident[True]["campaign"]
    # the early first batch (the default) is another campaign; null, the folders made with
    # the lookahead before it existed keep theirs
    assert project_params["active_learning"]["early_first_batch"] == 0.5
    early = {v: campaign_identity(
        _with(project_params, "active_learning.early_first_batch", v), sn2)
        for v in (None, 0.25)}
    no_early = copy.deepcopy(project_params)
    del no_early["active_learning"]["early_first_batch"]
    assert early[None]["campaign"] == campaign_identity(no_early, sn2)["campaign"]
    assert len({json.dumps(i["campaign"], sort_keys=True)
                for i in (early[None], early[0.25], ident[True])}) == 3


def test_auto_baseline_is_xtb_for_dft_molecules_and_none_for_xtb_levels_and_crystals(
        project_params):
    from reactive_al.models.baseline import resolve_baseline

    sn2 = load_system("sn2_cl_ch3cl", project_params["systems"], PROJECT_ROOT)
    argon = load_system("argon_fcc", project_params["systems"], PROJECT_ROOT)
    xtb_level = load_system("sn2_cl_ch3cl", {"sn2_cl_ch3cl": {
        **project_params["systems"]["sn2_cl_ch3cl"], "level_of_theory": {"program": "xtb"}}},
        PROJECT_ROOT)
    assert project_params["training"]["baseline"] == "auto"  # the default
    assert resolve_baseline("auto", sn2.level, False) == "xtb"
    assert resolve_baseline("auto", xtb_level.level, False) is None
    assert resolve_baseline("auto", argon.level, True) is None
    assert resolve_baseline(None, sn2.level, False) is None  # explicit choices stay
    # the identity holds what is computed: auto is xtb on SN2, and none on a crystal (so a
    # crystal campaign made before auto keeps its identity)
    ident = {b: campaign_identity(_with(project_params, "training.baseline", b), sn2)["campaign"]
             for b in ("auto", "xtb", None)}
    assert ident["auto"] == ident["xtb"] != ident[None]
    crystal = {b: campaign_identity(
        _with(project_params, "training.baseline", b), argon)["campaign"]
        for b in ("auto", None)}
    assert crystal["auto"] == crystal[None]
    check_parameters(_with(project_params, "training.baseline", "auto"))  # a valid value


def _frames(n: int) -> list[Atoms]:
    out = []
    for i in range(n):
        a = Atoms("H2", positions=[[0, 0, 0], [0.7 + 0.01 * i, 0, 0]])
        a.calc = SinglePointCalculator(a, energy=-float(i), forces=np.full((2, 3), float(i)))
        out.append(a)
    return out


def test_frames_cut_at_a_frame_boundary_are_reported(tmp_path):
    from kedro.io import DatasetError

    from reactive_al.datasets import ExtXYZDataset

    path = tmp_path / "labeled.extxyz"
    ds = ExtXYZDataset(str(path))
    ds.save(_frames(3))
    back = ds.load()
    assert len(back) == 3 and back[2].get_potential_energy() == -2.0
    assert "frames_in_file" not in back[0].info
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: 2 * 4]) + "\n")  # two whole frames of three
    with pytest.raises(DatasetError, match=r"truncated \(2 of 3 frames\); remove the file"):
        ds.load()
    path.write_text("\n".join(lines[:5]) + "\n")  # cut inside a frame
    with pytest.raises(DatasetError, match="cannot read extxyz"):
        ds.load()


def test_damaged_checkpoint_is_one_line(tmp_path):
    from kedro.io import DatasetError

    from reactive_al.datasets import CommitteeCheckpointDataset

    path = tmp_path / "committee.pt"
    path.write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(DatasetError) as err:
        CommitteeCheckpointDataset(str(path)).load()
    assert "unreadable committee checkpoint (truncated, or not a torch checkpoint)" in str(
        err.value)
    assert "\n" not in str(err.value) and "remove it to retrain" in str(err.value)


def test_yaml_error_message_names_file_line_and_tab(tmp_path):
    import shutil

    from reactive_al.checks import yaml_message

    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf",
                    ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf/local").mkdir()
    bad = tmp_path / "conf/local/parameters_x.yml"
    bad.write_text("selection:\n\tbatch_size: 8\n")
    with pytest.raises(Exception) as err:
        load_parameters(tmp_path)
    msg = yaml_message(err.value)
    assert msg.startswith(f"{bad}: invalid YAML (line 2, column 1")
    assert "not tabs" in msg


def test_runtime_n_iterations_rebuilds_the_pipelines(monkeypatch):
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    monkeypatch.chdir(PROJECT_ROOT)
    bootstrap_project(Path(PROJECT_ROOT))
    with KedroSession.create(project_path=PROJECT_ROOT,
                             runtime_params={"active_learning": {"n_iterations": 2}}) as s:
        s.load_context()
        spaces = {n.namespace.split(".")[0] for n in pipelines["active_learning"].nodes
                  if n.namespace}
    assert spaces == {"iter_00", "iter_01"}
