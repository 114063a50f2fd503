"""How a campaign's profile records add up (``reactive_al.profiling.summarize``)."""

from __future__ import annotations

import pytest

from reactive_al.profiling import summarize


def _node(name: str, start: float, end: float, stage: str = "node") -> dict:
    return {"node": name, "stage": stage, "seconds": end - start, "start": start, "pid": 1}


def test_a_batch_labeled_while_the_committee_is_evaluated_is_counted_once():
    # the initial labels run 0.1–10 s while the warm-up takes 0.1–2 s and label_initial_pool
    # waits 2–10 s; 5 s training, the batch runs 15.1–35 s while evaluation takes 15.1–20 s
    # and label_selected waits 20–35 s; 5 s of Kedro around it
    records = [
        _node("submit_initial_pool", 0, 0.1), _node("submit_initial_pool", 0.1, 10, "qm_batch"),
        _node("warm_up_training", 0.1, 2), _node("label_initial_pool", 2, 10),
        _node("iter_00.train_committee", 10, 15),
        _node("iter_00.submit_selected", 15, 15.1),
        _node("iter_00.submit_selected", 15.1, 35, stage="qm_batch"),
        _node("iter_00.evaluate_committee", 15.1, 20),
        _node("iter_00.label_selected", 20, 35),
    ]
    out = summarize(records, process_wall=40)
    assert out["qm_wall_time_s"] == pytest.approx(29.8)
    assert out["qm_fraction"] == pytest.approx(29.8 / 40, abs=1e-3)
    assert out["stages_s"]["qm_labeling"] == pytest.approx(29.8)
    assert out["overlapped_with_qm_s"] == {"evaluation": pytest.approx(4.9),
                                           "training": pytest.approx(1.9)}
    assert out["driver_waiting_for_qm_s"] == pytest.approx(15.1 + 0.1 + 8)
    assert out["stages_s"]["kedro_overhead"] == pytest.approx(5.0)
    # the stages add up to the wall time once the overlap is taken off (to the 0.1 s submit)
    hidden = sum(out["overlapped_with_qm_s"].values())
    assert sum(out["stages_s"].values()) - hidden == pytest.approx(40, abs=0.25)
    assert out["per_iteration_s"][0]["qm_labeling"] == pytest.approx(19.9)


def test_a_profile_of_foreground_labeling_counts_the_labeling_node():
    # before the overlap: label_selected itself ran the QM
    records = [_node("label_initial_pool", 0, 10), _node("iter_00.train_committee", 10, 15),
               _node("iter_00.evaluate_committee", 15, 20),
               _node("iter_00.label_selected", 20, 35)]
    out = summarize(records, process_wall=40)
    assert out["stages_s"]["qm_labeling"] == pytest.approx(25)
    assert out["qm_fraction"] == pytest.approx(25 / 40, abs=1e-3)
    assert out["overlapped_with_qm_s"] == {} and out["driver_waiting_for_qm_s"] == 0


def test_two_batches_sharing_the_workers_count_their_time_once():
    # lookahead: batch 1 (submitted at 15 s) starts while batch 0 (10–30 s) still runs and
    # ends at 45 s; training of the next committee (31–40 s) runs while batch 1 is labeled
    records = [
        _node("iter_00.submit_first_batch", 10.1, 30, stage="qm_batch"),
        _node("iter_00.submit_selected", 15, 45, stage="qm_batch"),
        _node("iter_00.label_selected", 20, 30),
        _node("iter_01.train_committee", 31, 40),
    ]
    out = summarize(records, process_wall=50)
    assert out["stages_s"]["qm_labeling"] == pytest.approx(34.9)  # 10.1–45 s
    assert out["qm_fraction"] == pytest.approx(34.9 / 50, abs=1e-3)
    assert out["overlapped_with_qm_s"] == {"training": pytest.approx(9)}
    assert out["per_iteration_s"][0]["qm_labeling"] == pytest.approx(19.9 + 30)
