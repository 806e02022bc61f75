"""The typed clinical table: schema in dataset.json, typed rows, one-line errors."""

from __future__ import annotations

import json

import pytest

from confseg.data import load_dataset
from confseg.data.clinical import ClinicalColumn, ClinicalSchema
from confseg.errors import DatasetError
from confseg.synth import generate
from confseg.synth.clinical import CLINICAL_SCHEMA


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("c") / "syn", patients=3, views=1, days=2, size=64,
                    seed=0)


def test_synth_writes_a_typed_table_with_its_schema(syn):
    ds = load_dataset(syn)
    obj = json.loads((syn / "dataset.json").read_text())
    assert [c["name"] for c in obj["clinical_schema"]] == CLINICAL_SCHEMA.names
    table = ds.clinical_table()
    assert table.schema == CLINICAL_SCHEMA and not table.schema.inferred
    assert len(table.rows) == 6
    r = table.rows[1]
    assert isinstance(r["sf_ratio"], float) and isinstance(r["readmit_30d"], int)
    assert r["sf_change"] in ("up", "down", "same") and table.rows[0]["sf_change"] is None
    sf = table.numeric("sf_ratio")
    assert len(sf) == 6 and all(100 < v < 500 for v in sf.values())
    assert set(table.binary_per_patient("readmit_30d").values()) <= {0, 1}
    assert table.days() == {p: [0, 1] for p in table.days()}
    table.require_two_days("sf-change")


def test_target_errors_name_the_column(syn):
    table = load_dataset(syn).clinical_table()
    with pytest.raises(DatasetError, match="no column 'spo2_ra'; columns: patient, day"):
        table.numeric("spo2_ra")
    with pytest.raises(DatasetError, match="'probe' is a category, not a number"):
        table.numeric("probe")
    with pytest.raises(DatasetError, match="'sf_ratio' is a float; an outcome task needs a "
                                           "binary"):
        table.binary_per_patient("sf_ratio")


def test_single_day_dataset_refuses_sf_change(tmp_path):
    ds = load_dataset(generate(tmp_path / "one", patients=2, views=1, days=1, size=64, seed=0))
    with pytest.raises(DatasetError, match="every patient has a single day; sf-change"):
        ds.clinical_table().require_two_days("sf-change")


def test_bad_value_names_file_and_line(syn, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(syn, bad)
    lines = (bad / "clinical.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[CLINICAL_SCHEMA.names.index("sf_ratio")] = "high"
    lines[2] = ",".join(cells)
    (bad / "clinical.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"clinical.csv:3: sf_ratio='high' is not a number"):
        load_dataset(bad).clinical_table()


def test_schema_is_inferred_for_an_untyped_table(tmp_path):
    from conftest import write_tiny_dataset

    root = write_tiny_dataset(tmp_path / "t", patients=2, per_patient=1)
    (root / "clinical.csv").write_text("patient,day,sf,flag,group\np0,0,310.5,1,a\n"
                                       "p1,0,,0,b\n")
    table = load_dataset(root).clinical_table()
    assert table.schema.inferred
    assert [c.kind for c in table.schema.columns] == ["id", "int", "float", "binary", "category"]
    assert table.numeric("sf") == {("p0", 0): 310.5}  # the missing value is left out


def test_schema_checks():
    with pytest.raises(DatasetError, match="first columns must be patient, day"):
        ClinicalSchema((ClinicalColumn(name="x", kind="float"),))
    with pytest.raises(DatasetError, match="kind 'number'"):
        ClinicalColumn(name="x", kind="number")
    with pytest.raises(DatasetError, match="given twice"):
        ClinicalSchema.of(ClinicalColumn(name="a", kind="int"), ClinicalColumn(name="a",
                                                                               kind="int"))
    col = ClinicalColumn(name="o", kind="binary")
    with pytest.raises(DatasetError, match="holds 0 or 1"):
        col.parse("2", where="f:2")
    assert col.parse("1.0", where="f") == 1 and col.parse("", where="f") is None
