"""Memory-backed persistent buffers commit whole snapshots: an interrupted flush keeps the last commit."""

from __future__ import annotations

import numpy as np
import pytest

from unibatch import BoxSpace, DictSpace, ReplayBuffer
from unibatch.backends import backend_from_name
from unibatch.storages import MemmapStorage, MemoryStorage

NUMPY = backend_from_name("numpy")


def test_an_interrupted_snapshot_leaves_the_previous_commit(tmp_path, monkeypatch):
    space = DictSpace(NUMPY, {"x": BoxSpace(NUMPY, 0, 100, "int64")})
    buffer = ReplayBuffer.create(MemoryStorage, space, capacity=8, cache_path=tmp_path / "rb")
    buffer.extend({"x": np.arange(1, 5)})
    buffer.flush()
    buffer.append({"x": np.asarray(9)})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the snapshot")

    monkeypatch.setattr(MemmapStorage, "_set", crash)
    with pytest.raises(KeyboardInterrupt):
        buffer.flush()
    monkeypatch.undo()
    reloaded = ReplayBuffer.load_from(tmp_path / "rb", backend=NUMPY)
    assert reloaded.get_at(slice(None))["x"].tolist() == [1, 2, 3, 4]
    buffer.flush()  # the next flush succeeds and replaces the leftover
    assert ReplayBuffer.load_from(tmp_path / "rb", backend=NUMPY).get_at(slice(None))["x"].tolist() == [1, 2, 3, 4, 9]
    assert len([p for p in (tmp_path / "rb").iterdir() if p.is_dir()]) == 1
