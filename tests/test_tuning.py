"""Tuning the query hyperparameters on a pre-labeled pool (real HF/STO-3G labels, no new QM)."""

from __future__ import annotations

import shutil

import numpy as np
import optuna
import pytest
from ase import Atoms

from reactive_al.oracles.labeling import LabelingConfig, label_structures
from reactive_al.tuning import (
    base_config,
    baseline_params,
    open_study,
    query_batch,
    run_study,
    suggest,
    validate_search_space,
)

from .conftest import HF_STO3G, PROJECT_ROOT

TINY_TRAINING = {
    "model": {"ensemble_size": 2, "hidden": [16], "radial_shifts": 8, "angular_shifts": 4,
              "angular_sections": 2},
    "fit": {"max_epochs": 12, "patience": 8, "batch_size": 32, "max_minutes": 0.5},
}
# the campaign's `selection` block, exploration settings included (a replay ignores them)
CAMPAIGN_SELECTION = {
    "batch_size": 2, "strategy": "top_k", "criterion": "force", "min_separation": 0.02,
    "seed": 1, "threshold": {"low": 0.0, "high": float("inf")},
    "uncertainty": {"method": "committee", "num_features": 512, "calibration": "conformal"},
    "walkers": {"temperatures_K": [300], "n_steps": 10},
    "samplers": {"neb": {"enabled": False}},
}
SPACE = {
    "selection.batch_size": {"type": "int", "low": 2, "high": 4},
    "selection.uncertainty.method": {"type": "categorical",
                                     "choices": ["committee", "gradient_features", "distance"]},
    "selection.strategy": {"type": "categorical",
                           "choices": ["top_k", "max_det", "max_dist", "kmeans", "random"]},
    "selection.uncertainty.num_features": {
        "type": "int", "low": 16, "high": 64, "log": True,
        "when": {"selection.uncertainty.method": ["gradient_features", "distance"],
                 "selection.strategy": ["max_det", "max_dist", "kmeans"]}},
    "training.model.ensemble_size": {"type": "int", "low": 2, "high": 3},
}


def tuning_params(storage: str | None, **study) -> dict:
    return {
        "study": {"name": "water", "storage": storage, "n_trials": 3, "seed": 5,
                  "n_startup_trials": 2, "report_every": 2,
                  "pruner": {"type": "median", "n_startup_trials": 4}, **study},
        "replay": {"n_initial": 6, "budget": 12, "seed": 0},
        "query": {},
        "training": {},
        "search_space": SPACE,
    }


@pytest.fixture(scope="module")
def pool_and_test(tmp_path_factory) -> tuple[list[Atoms], list[Atoms]]:
    """28 water frames, one O-H bond stretched up to +0.5 Å, labeled once with HF/STO-3G."""
    rng = np.random.default_rng(5)
    frames = []
    for i in range(28):
        a = Atoms("OH2", positions=[[0, 0, 0], [0.96 + 0.5 * rng.random(), 0, 0],
                                    [-0.24, 0.93, 0]])
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.info.update(origin=f"test/{i}",
                      subset="stretched" if a.get_distance(0, 1) > 1.2 else "well")
        frames.append(a)
    cfg = LabelingConfig(charge=0, multiplicity=1, level=HF_STO3G, scheduler="synchronous",
                         cache_path=str(tmp_path_factory.mktemp("cache") / "c.db"),
                         progress=False)
    labeled, failures = label_structures(frames, cfg)
    assert not failures
    return labeled[:20], labeled[20:]


@pytest.fixture(scope="module")
def studies(pool_and_test, tmp_path_factory):
    """The same study run twice (3 trials each), each time under its own MLflow parent run."""
    import mlflow

    tmp = tmp_path_factory.mktemp("tuning")
    storage = f"sqlite:///{tmp / 'sub' / 'optuna.db'}"  # the folder does not exist yet
    old_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_experiment("tuning_test")
    pool, test = pool_and_test
    params = tuning_params(storage)
    runs = []
    try:
        for k in range(2):
            with mlflow.start_run(run_name=f"campaign_{k}") as parent:
                result = run_study(pool, test, params, selection=CAMPAIGN_SELECTION,
                                   training=TINY_TRAINING)
            snapshot = [(t.number, t.state.name, t.params, t.values) for t in result.study.trials]
            runs.append({"parent": parent.info.run_id, "result": result, "trials": snapshot})
        yield {"storage": storage, "params": params, "runs": runs, "tmp": tmp}
    finally:
        mlflow.set_tracking_uri(old_uri)


def test_trials_are_stored_and_the_study_resumes(studies):
    first, second = (r["trials"] for r in studies["runs"])
    assert len(first) == 3 and len(second) == 6
    assert second[:3] == first  # nothing lost or changed by the second run
    stored = optuna.load_study(study_name="water", storage=studies["storage"])
    assert [t.number for t in stored.trials] == list(range(6))
    assert {t.state.name for t in stored.trials} <= {"COMPLETE", "PRUNED"}
    # trial 0 of a new study replays the current settings
    assert stored.trials[0].params == {"selection.batch_size": 2,
                                       "selection.uncertainty.method": "committee",
                                       "selection.strategy": "top_k",
                                       "training.model.ensemble_size": 2}
    done = [t for t in stored.trials if t.state.name == "COMPLETE"]
    for t in done:
        history = t.user_attrs["history"]
        assert history[0]["n_labels"] == 6 and history[-1]["n_labels"] == 12
        assert t.value == pytest.approx(history[-1]["force_mae_ev_per_a"])
        assert np.isfinite(t.value) and t.value > 0
    assert studies["runs"][0]["result"].summary["n_new_trials"] == 3
    summary = studies["runs"][1]["result"].summary
    assert summary["n_trials"] == 6 and summary["n_new_trials"] == 3
    assert summary["storage"] == studies["storage"]
    assert summary["best_values"]["force_mae_ev_per_a"] == min(t.value for t in done)
    table = studies["runs"][1]["result"].trials
    assert list(table["number"]) == list(range(6))
    assert {"force_mae_ev_per_a", "selection.strategy", "mlflow_run_id"} <= set(table.columns)


def test_every_trial_is_a_nested_mlflow_run(studies):
    import mlflow

    runs = mlflow.search_runs(experiment_names=["tuning_test"])
    for k, record in enumerate(studies["runs"]):
        nested = runs[runs["tags.mlflow.parentRunId"] == record["parent"]]
        assert sorted(nested["tags.mlflow.runName"]) == [f"trial_{n}" for n in
                                                          range(3 * k, 3 * k + 3)]
        assert set(nested["status"]) <= {"FINISHED", "KILLED"}
        assert (nested["params.selection.strategy"].notna()).all()
        finished = nested[nested["status"] == "FINISHED"]
        assert finished["metrics.objective/force_mae_ev_per_a"].notna().all()
        parent = runs[runs["run_id"] == record["parent"]].iloc[0]
        assert parent["metrics.tuning/n_trials"] == 3 * (k + 1)
    stored = optuna.load_study(study_name="water", storage=studies["storage"])
    assert {t.user_attrs["mlflow_run_id"] for t in stored.trials} <= set(runs["run_id"])


def test_best_params_file_merges_into_the_campaign_parameters(studies, tmp_path):
    from kedro_datasets.yaml import YAMLDataset

    from reactive_al.models import CommitteeSpec, TrainingConfig
    from reactive_al.selection import STRATEGIES
    from reactive_al.settings import load_parameters
    from reactive_al.uncertainty import UncertaintyConfig

    best = studies["runs"][1]["result"].best_params
    assert set(best) == {"selection", "training"}
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf/base", conf / "base")
    (conf / "local").mkdir()
    shipped = load_parameters(project=tmp_path, env=None)
    # as the catalog entry writes it, and as the README says to use it
    YAMLDataset(filepath=str(tmp_path / "best_query_params.yml")).save(best)
    shutil.copy(tmp_path / "best_query_params.yml", conf / "local/parameters_best.yml")
    params = load_parameters(project=tmp_path, env=None)

    sel = params["selection"]
    for key in ("batch_size", "strategy"):
        assert sel[key] == best["selection"][key]
    assert sel["uncertainty"]["method"] == best["selection"]["uncertainty"]["method"]
    # soft merge: the rest of the nested blocks stays as in base
    assert sel["uncertainty"]["calibration"] == "conformal"
    assert sel["walkers"]["n_steps"] == 300
    assert sel["criterion"] == best["selection"].get("criterion", "force")
    assert sel["strategy"] in STRATEGIES
    UncertaintyConfig(**{**sel["uncertainty"], "criterion": sel["criterion"]})
    model = params["training"]["model"]
    assert model["ensemble_size"] == best["training"]["model"]["ensemble_size"]
    assert model["hidden"] == [64, 48]
    CommitteeSpec(symbols=["H", "O"], **model)
    TrainingConfig(**params["training"]["fit"])

    # the shipped tuning parameters are valid and start from the campaign's settings
    tuning, sel, training = shipped["tuning"], shipped["selection"], shipped["training"]
    validate_search_space(tuning["search_space"])
    base = base_config(tuning, sel, training)
    assert "walkers" not in base["selection"] and "samplers" not in base["selection"]
    assert base["training"]["model"]["hidden"] == tuning["training"]["model"]["hidden"]
    assert baseline_params(tuning["search_space"], base) == {
        "selection.batch_size": sel["batch_size"],
        "selection.uncertainty.method": sel["uncertainty"]["method"],
        "selection.strategy": sel["strategy"], "selection.criterion": sel["criterion"],
        "training.model.ensemble_size": training["model"]["ensemble_size"]}


def test_hopeless_trial_is_pruned_at_an_intermediate_step(pool_and_test, tmp_path):
    pool, test = pool_and_test
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = tuning_params(storage, pruner={"type": "median", "n_startup_trials": 1},
                           enqueue_baseline=False)
    study = open_study(params["study"])
    # a finished trial that was perfect at every checkpoint: any real replay is worse
    study.add_trial(optuna.trial.create_trial(
        value=0.0, intermediate_values={c: 0.0 for c in range(2, 14, 2)}))
    run_study(pool, test, params, selection=CAMPAIGN_SELECTION, training=TINY_TRAINING,
              n_trials=1)
    trial = optuna.load_study(study_name="water", storage=storage).trials[1]
    assert trial.state.name == "PRUNED"
    assert min(trial.intermediate_values) > 6  # never judged before a query acted


def test_two_objectives_give_a_pareto_front_through_the_node(pool_and_test):
    from reactive_al.pipelines.tuning import create_pipeline
    from reactive_al.pipelines.tuning.nodes import tune_query

    pipe = create_pipeline()
    assert pipe.inputs() == {"labeled_set", "test_set", "params:selection",
                             "params:training", "params:tuning"}
    assert pipe.outputs() == {"best_query_params", "tuning_summary", "tuning_trials"}

    pool, test = pool_and_test
    params = tuning_params(None, n_trials=2, objectives=[
        {"metric": "force_mae_ev_per_a"}, {"metric": "n_labels", "direction": "minimize"}])
    params["search_space"] = {
        "selection.strategy": {"type": "categorical", "choices": ["random", "top_k"]},
        "replay.budget": {"type": "int", "low": 8, "high": 10, "step": 2},
    }
    best, summary, table = tune_query(pool, test, CAMPAIGN_SELECTION, TINY_TRAINING, params)
    assert set(best) == {"selection"}  # replay.* shapes the replay only
    assert summary["pareto_front"] and "n_labels" in summary["best_values"]
    assert set(table["state"]) == {"COMPLETE"}
    assert set(table["n_labels"]) <= {8, 10}


def test_every_strategy_returns_distinct_unlabeled_indices(pool_and_test):
    from reactive_al.models import CommitteeSpec, TrainingConfig, train_committee

    pool, _ = pool_and_test
    train, rest = pool[:6], pool[6:]
    committee = train_committee(train, CommitteeSpec(symbols=["H", "O"], **TINY_TRAINING["model"]),
                                TrainingConfig(**TINY_TRAINING["fit"]))
    for strategy in ("top_k", "threshold", "max_det", "max_dist", "kmeans", "random"):
        for method in ("committee", "gradient_features", "distance"):
            sel = {**CAMPAIGN_SELECTION, "strategy": strategy,
                   "uncertainty": {"method": method, "num_features": 16}}
            picked, scores = query_batch(committee, train, rest, sel, 3,
                                         np.random.default_rng(0))
            assert len(scores) == len(rest) and np.all(scores >= 0)
            assert 0 < len(picked) <= 3 and len(set(picked.tolist())) == len(picked)
            assert picked.min() >= 0 and picked.max() < len(rest)


def test_seeded_sampler_reproduces_and_a_resumed_study_does_not_repeat(tmp_path):
    space = {**SPACE, "training.fit.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                     "log": True}}

    def dummy(trial):
        suggest(trial, space, {})
        return 0.0

    def params_of(study):
        return [tuple(sorted(t.params.items())) for t in study.trials]

    cfg = tuning_params(None)["study"]
    a, b = open_study(cfg), open_study(cfg)
    a.optimize(dummy, n_trials=3)
    b.optimize(dummy, n_trials=3)
    assert params_of(a) == params_of(b)

    cfg = {**cfg, "storage": f"sqlite:///{tmp_path / 'o.db'}"}
    first = open_study(cfg)
    first.optimize(dummy, n_trials=3)
    resumed = open_study(cfg)
    resumed.optimize(dummy, n_trials=3)
    seen = params_of(resumed)
    assert len(seen) == 6 and not set(seen[3:]) & set(seen[:3])
    with pytest.raises(ValueError, match="directions"):
        open_study({**cfg, "objectives": ["force_mae_ev_per_a", "n_labels"]})


def test_malformed_search_space_or_replay_names_the_file(pool_and_test):
    with pytest.raises(ValueError, match=r"parameters_tuning.yml.*selection.strategy"):
        validate_search_space({"selection.strategy": {"type": "categorical",
                                                      "choices": ["top_k", "greedy"]}})
    later = {"selection.batch_size": {"type": "int", "low": 2, "high": 4,
                                      "when": {"selection.strategy": "top_k"}},
             "selection.strategy": {"type": "categorical", "choices": ["top_k", "random"]}}
    with pytest.raises(ValueError, match="earlier entry"):
        validate_search_space(later)
    validate_search_space({"selection.batch_size": later["selection.batch_size"]})  # base value
    with pytest.raises(ValueError, match="must start with"):
        validate_search_space({"walkers.n_steps": {"type": "int", "low": 2, "high": 4}})
    too_big = tuning_params(None)
    too_big["replay"]["budget"] = 100
    with pytest.raises(ValueError, match=r"parameters_tuning.yml.*pool size"):
        run_study(*pool_and_test, too_big, selection=CAMPAIGN_SELECTION, training=TINY_TRAINING)
