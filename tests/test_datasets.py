import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from reactive_al.datasets import CommitteeCheckpointDataset, ExtXYZDataset
from reactive_al.models import Committee, CommitteeSpec, build_model


def test_extxyz_round_trip_keeps_labels_and_info(tmp_path):
    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    forces = np.arange(9.0).reshape(3, 3) / 10
    a.calc = SinglePointCalculator(a, energy=-2039.5, forces=forces)
    a.info.update({"origin": "reactant/displaced", "subset": "reactant", "qm_scf_cycles": 9})
    ds = ExtXYZDataset(str(tmp_path / "f.extxyz"))
    ds.save([a, a])
    back = ds.load()
    assert len(back) == 2
    assert back[0].get_potential_energy() == -2039.5
    np.testing.assert_allclose(back[1].get_forces(), forces)
    assert back[0].info["origin"] == "reactant/displaced"
    assert back[0].info["qm_scf_cycles"] == 9
    ds.save([])
    assert ds.load() == []


def test_checkpoint_round_trip_predicts_identically(tmp_path):
    spec = CommitteeSpec(symbols=["H", "O"], ensemble_size=2, hidden=[8],
                         self_energies={"H": -0.5, "O": -75.0})
    committee = Committee(build_model(spec), spec, {"epochs": 3})
    ds = CommitteeCheckpointDataset(str(tmp_path / "c.pt"))
    ds.save(committee)
    loaded = ds.load()
    frame = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    p1, p2 = committee.predict([frame]), loaded.predict([frame])
    np.testing.assert_allclose(p1["energy_members"], p2["energy_members"])
    assert loaded.history == {"epochs": 3}
    assert loaded.spec.hidden == [8]


def test_atomic_dataset_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    import json

    import pytest

    from reactive_al.datasets import AtomicDataset
    from reactive_al.settings import load_catalog

    path = tmp_path / "08_reporting" / "metrics.json"
    ds = AtomicDataset("json.JSONDataset", str(path))
    ds.save({"force_mae": 0.1})
    assert ds.load() == {"force_mae": 0.1} and ds.exists()

    # a write that dies half-way (here: the encoder fails after the file is opened) keeps
    # the previous file whole, and no temporary file is taken for the result
    def dies(obj, fh, **kwargs):
        fh.write('{"force_m')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", dies)
    with pytest.raises(BaseException):  # noqa: B017,PT011
        ds.save({"force_mae": 0.2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"force_mae": 0.1}

    # the project's JSON, CSV, text and YAML outputs all go through it
    catalog = load_catalog(".", runtime_params={"data_root": str(tmp_path)})
    for name in ("metrics", "learning_curve", "campaign_report", "best_query_params"):
        assert catalog.get(name)._describe()["dataset"].endswith(
            ("JSONDataset", "CSVDataset", "TextDataset", "YAMLDataset"))
