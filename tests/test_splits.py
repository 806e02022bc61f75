import json

import pytest

from confseg.data import load_dataset
from confseg.data.splits import Splits, check_splits, make_splits, read_splits, write_splits
from confseg.errors import SplitError

from conftest import write_tiny_dataset


@pytest.fixture
def ds(tmp_path):
    return load_dataset(write_tiny_dataset(tmp_path / "ds", patients=7, per_patient=1))


def test_every_patient_in_exactly_one_fold(ds):
    s = make_splits(ds, k=3, seed=1)
    pats = s.patients()
    assert sorted(pats) == ds.patients() and len(pats) == len(set(pats))
    assert sorted(len(f) for f in s.folds) == [2, 2, 3]
    check_splits(s, ds)


def test_partition_keeps_patients_apart(ds):
    s = make_splits(ds, k=3, seed=0)
    for f in range(3):
        train, val, test = s.partition(f)
        assert not (set(train) & set(val)) and not (set(train) & set(test))
        assert not (set(val) & set(test)) and sorted(train + val + test) == ds.patients()
        assert set(test) == set(s.folds[f]) and set(val) == set(s.folds[(f + 1) % 3])


def test_seeds_and_loo(ds):
    assert make_splits(ds, k=3, seed=0) == make_splits(ds, k=3, seed=0)
    assert make_splits(ds, k="loo").k == 7
    assert {make_splits(ds, k=3, seed=s).folds for s in range(6)}.__len__() > 1


def test_patient_in_two_folds_is_an_error(tmp_path):
    with pytest.raises(SplitError, match="patient 'p1' is in folds 0 and 1"):
        Splits(folds=(("p0", "p1"), ("p1", "p2")))
    p = tmp_path / "splits.json"
    p.write_text(json.dumps({"folds": [["a"], ["a"]]}))
    with pytest.raises(SplitError, match=r"splits\.json: patient 'a' is in folds 0 and 1"):
        read_splits(p)


def test_bad_requests(ds, tmp_path):
    with pytest.raises(SplitError, match="k=9 folds but only 7 patients"):
        make_splits(ds, k=9)
    s = make_splits(ds, k=3)
    with pytest.raises(SplitError, match=r"fold 5 does not exist; this split has folds 0\.\.2"):
        s.partition(5)
    with pytest.raises(SplitError, match="leave no fold for validation"):
        make_splits(ds, k=2).partition(0)
    with pytest.raises(SplitError, match="'ghost' is not in dataset"):
        check_splits(Splits(folds=((*ds.patients(),), ("ghost",))), ds)
    with pytest.raises(SplitError, match="is in no fold"):
        check_splits(Splits(folds=(tuple(ds.patients()[:3]), tuple(ds.patients()[3:5]))), ds)
    with pytest.raises(SplitError, match="not found; create it"):
        read_splits(tmp_path / "nope.json")


def test_write_read_round_trip(ds, tmp_path):
    s = make_splits(ds, k=3, seed=4)
    write_splits(tmp_path / "s.json", s)
    assert read_splits(tmp_path / "s.json") == s


def test_validation_modes_never_touch_the_test_fold(tmp_path):
    from confseg.data.splits import parse_val

    s = Splits(folds=(("a", "b"), ("c", "d"), ("e", "f"), ("g", "h"), ("i", "j")))
    tr, va, te = s.partition(0)
    assert te == ["a", "b"] and va == ["c", "d"] and len(tr) == 6
    tr, va, te = s.partition(0, val="inner:0.25", seed=3)
    assert te == ["a", "b"] and len(va) == 2 and len(tr) == 6
    assert not set(va) & set(te) and not set(tr) & set(te) and not set(tr) & set(va)
    assert s.partition(0, val="inner:0.25", seed=3) == (tr, va, te)  # deterministic
    tr, va, te = s.partition(2, val="none")
    assert va == [] and te == ["e", "f"] and len(tr) == 8
    two = Splits(folds=(("a",), ("b",)))
    with pytest.raises(SplitError, match="leave no fold for validation; use k >= 3, or --val"):
        two.partition(0)
    assert two.partition(0, val="none") == (["b"], [], ["a"])
    with pytest.raises(SplitError, match="leave none to train on"):
        Splits(folds=(("a",), ("b",), ("c",))).partition(0, val="inner:0.9")
    for bad in ("inner:1", "inner:x", "fold", "inner:0"):
        with pytest.raises(SplitError, match="use next-fold, inner:F"):
            parse_val(bad)
