import numpy as np
import pytest

from reactive_al.oracles import labeling
from reactive_al.oracles.labeling import FailureBudgetExceeded, LabelingConfig, label_structures

from .conftest import HF_STO3G, water


def _cfg(tmp_path, **kw) -> LabelingConfig:
    base = {"charge": 0, "multiplicity": 1, "level": HF_STO3G,
            "cache_path": str(tmp_path / "cache.db"), "scheduler": "synchronous",
            "progress": False}
    return LabelingConfig(**{**base, **kw})


def test_cache_hit_returns_identical_labels_without_qm(tmp_path, water_frames, monkeypatch):
    cfg = _cfg(tmp_path)
    first, failures = label_structures(water_frames, cfg)
    assert len(first) == len(water_frames) and failures == []

    def no_qm(*args, **kwargs):
        raise AssertionError("QM called for a cached structure")

    monkeypatch.setattr(labeling, "compute_label", no_qm)
    second, _ = label_structures(water_frames, cfg)
    for a, b in zip(first, second, strict=True):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.info["label_key"] == b.info["label_key"]
        assert b.info["origin"].startswith("test/")
        assert b.info["qm_method"] == "hf"


def test_interrupted_batch_recomputes_only_missing(tmp_path, water_frames, monkeypatch):
    cfg = _cfg(tmp_path)
    label_structures(water_frames[:4], cfg)  # "killed" after four labels
    calls = []
    real = labeling.compute_label

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(labeling, "compute_label", counting)
    labeled, _ = label_structures(water_frames, cfg)
    assert len(labeled) == 6
    assert len(calls) == 2


def test_bad_geometry_is_recorded_and_rest_labeled(tmp_path, water_frames):
    bad = water()
    bad.positions[1] = [0.1, 0, 0]
    bad.info["origin"] = "md/broken"
    labeled, failures = label_structures([*water_frames[:3], bad], _cfg(tmp_path))
    assert len(labeled) == 3
    assert failures == [{"index": 3, "origin": "md/broken", "category": "geometry_invalid",
                         "message": failures[0]["message"]}]
    assert "Å apart" in failures[0]["message"]


def test_failure_budget_stops_a_systematically_failing_batch(tmp_path, water_frames):
    for a in water_frames[:4]:
        a.positions[1] = a.positions[0] + 0.05
    with pytest.raises(FailureBudgetExceeded, match="failure budget"):
        label_structures(water_frames, _cfg(tmp_path, max_failure_fraction=0.5))


def test_dask_local_cluster_labels_in_parallel(tmp_path, water_frames):
    cfg = _cfg(tmp_path, scheduler="local", n_workers=2)
    labeled, failures = label_structures(water_frames[:3], cfg)
    assert len(labeled) == 3 and not failures
    serial, _ = label_structures(water_frames[:3], _cfg(tmp_path / "other"))
    for a, b in zip(labeled, serial, strict=True):
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
