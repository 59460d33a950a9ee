from __future__ import annotations

import pandas as pd
import pytest

from ecgbeats.io import atomic_dir, atomic_path, write_json, write_parquet


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.json"
    write_json({"a": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_whole_directory_only_on_success(tmp_path):
    target = tmp_path / "sets"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("second")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sets"]


def test_written_files_are_readable_by_others(tmp_path):
    write_parquet(pd.DataFrame({"x": [1]}), tmp_path / "t.parquet")
    assert (tmp_path / "t.parquet").stat().st_mode & 0o044
