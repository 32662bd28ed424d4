"""load_dataset: .npz, CSV and Parquet round trips, and clear errors for bad data."""

from __future__ import annotations

import pickle  # noqa: TID251 - writes a real pickle, to check that it is refused
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privaudit.attacks.membership import AuditDataset, load_dataset
from privaudit.errors import DataError, LimitExceededError, UnsupportedFormatError
from privaudit.randomness import simulation_generator

RNG = simulation_generator(3)
FEATURES = RNG.normal(size=(40, 3))
LABELS = RNG.integers(0, 4, size=40)
MEMBER = np.arange(40) % 2 == 0


def _table(**overrides: object) -> pa.Table:
    columns: dict[str, object] = {
        "x0": FEATURES[:, 0],
        "x1": FEATURES[:, 1],
        "x2": FEATURES[:, 2],
        "label": LABELS,
        "member": MEMBER,
    }
    columns.update(overrides)
    return pa.table({name: pa.array(values) for name, values in columns.items()})


def _csv(path: Path, table: pa.Table) -> Path:
    import pyarrow.csv

    pyarrow.csv.write_csv(table, path)
    return path


def _same(data: AuditDataset, features: np.ndarray = FEATURES) -> None:
    np.testing.assert_allclose(data.features, features, rtol=1e-15)
    assert data.labels.tolist() == LABELS.tolist() and data.labels.dtype == np.int64
    assert data.member.tolist() == MEMBER.tolist() and data.member.dtype == np.bool_
    assert (data.n_examples, data.n_members) == (40, 20)


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "audit.data"  # no telling extension: the content decides
    pq.write_table(_table(extra=np.arange(40) * 1.0), path)
    data = load_dataset(path, features=["x0", "x1", "x2"])
    _same(data)
    assert data.format == "parquet" and data.feature_names == ("x0", "x1", "x2")
    everything = load_dataset(path)  # default: every column but label and member
    assert everything.feature_names == ("x0", "x1", "x2", "extra")


def test_csv_round_trip(tmp_path: Path) -> None:
    table = _table(member=MEMBER.astype(np.int64), label=LABELS.astype(np.float64))
    data = load_dataset(_csv(tmp_path / "audit.csv", table))
    _same(data)
    assert data.format == "csv"


def test_npz_round_trip_with_image_features(tmp_path: Path) -> None:
    images = RNG.normal(size=(40, 1, 2, 2))
    path = tmp_path / "audit.npz"
    np.savez_compressed(path, images=images, y=LABELS, in_train=MEMBER)
    data = load_dataset(path, features="images", label="y", member="in_train")
    _same(data, images)
    assert data.format == "npz" and data.features.shape == (40, 1, 2, 2)


def test_missing_columns_are_named_with_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.parquet"
    pq.write_table(_table(), path)
    with pytest.raises(DataError, match=r"has no column 'membr' \(did you mean 'member'\?\)"):
        load_dataset(path, member="membr")
    with pytest.raises(DataError, match="has no feature column 'x9'; it has: x0, x1, x2"):
        load_dataset(path, features=["x0", "x9"])
    np.savez(tmp_path / "a.npz", features=FEATURES, label=LABELS)
    with pytest.raises(DataError, match="has no array 'member'; it has: features, label"):
        load_dataset(tmp_path / "a.npz")


def test_missing_values_and_nans(tmp_path: Path) -> None:
    x1 = pa.array([None if i == 7 else float(v) for i, v in enumerate(FEATURES[:, 1])])
    path = tmp_path / "holes.parquet"
    pq.write_table(_table(x1=x1), path)
    with pytest.raises(DataError, match=r"column 'x1' has 1 missing values \(first at row 7\)"):
        load_dataset(path)
    broken = FEATURES.copy()
    broken[5, 2] = np.nan
    pq.write_table(_table(x2=broken[:, 2]), path)
    with pytest.raises(DataError, match=r"1 NaN or infinite values \(first at row 5, 'x2'\)"):
        load_dataset(path)
    np.savez(tmp_path / "nan.npz", features=broken, label=LABELS, member=MEMBER)
    with pytest.raises(DataError, match=r"first at row 5, 'features\[:, 2\]'"):
        load_dataset(tmp_path / "nan.npz")


def test_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "types.csv"
    _csv(path, _table(x0=np.array([f"s{i}" for i in range(40)])))
    with pytest.raises(DataError, match="column 'x0' has type string; features, labels"):
        load_dataset(path)
    _csv(path, _table(label=LABELS + 0.5))
    with pytest.raises(DataError, match=r"'label' must hold class indices .* non-integer"):
        load_dataset(path)
    _csv(path, _table(label=LABELS - 1))
    with pytest.raises(DataError, match="negative label -1"):
        load_dataset(path)
    _csv(path, _table(member=np.arange(40) % 3))
    with pytest.raises(DataError, match="'member' must be booleans or 0/1"):
        load_dataset(path)
    _csv(path, _table(member=np.ones(40, dtype=bool)))
    with pytest.raises(DataError, match=r"both members and non-members .*; it marks 40 of 40"):
        load_dataset(path)


def test_pickles_and_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    path.write_bytes(pickle.dumps({"features": FEATURES}))
    with pytest.raises(UnsupportedFormatError, match=r"pickle .* never loads pickles"):
        load_dataset(path)
    np.savez(tmp_path / "obj.npz", features=FEATURES, label=LABELS, member=np.array(MEMBER, object))
    with pytest.raises(UnsupportedFormatError, match="only pickle can hold"):
        load_dataset(tmp_path / "obj.npz")


def test_sizes_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.parquet"
    pq.write_table(_table(), path)
    with pytest.raises(LimitExceededError, match="40 rows, over the limit of 10"):
        load_dataset(path, max_rows=10)
    with pytest.raises(LimitExceededError, match="over the limit of 100 bytes"):
        load_dataset(path, max_bytes=100)
    # An .npz whose arrays unpack far beyond its size (a zip bomb) is refused unread.
    np.savez_compressed(
        tmp_path / "bomb.npz", features=np.zeros((40, 20_000)), label=LABELS, member=MEMBER
    )
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    with pytest.raises(LimitExceededError, match="more than 1000000 bytes"):
        load_dataset(tmp_path / "bomb.npz", max_bytes=1_000_000)


def test_a_csv_that_looks_like_a_text_pickle_is_read(tmp_path: Path) -> None:
    # Starts with a letter that is a pickle opcode and ends with "." (STOP), as a
    # protocol-0 pickle does; it is text, so it is read as CSV.
    path = tmp_path / "audit.csv"
    path.write_text("label,member,x\n0,true,1.\n1,false,2.")
    data = load_dataset(path)
    assert data.features.tolist() == [[1.0], [2.0]] and data.member.tolist() == [True, False]
