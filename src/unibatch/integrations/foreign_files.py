"""Files written by other tools (robomimic or Minari HDF5, LeRobot or pandas Parquet) as read-only buffers.

Each function infers the space from the file, opens the matching storage read-only and wraps it
in a ``ReplayBuffer`` holding every row, so samplers, views and ``dumps`` (a conversion into a
unibatch buffer) work on it unchanged. The storages themselves know nothing of buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unibatch.backends import ComputeBackend
from unibatch.buffers import ReplayBuffer
from unibatch.storages import SpaceStorage
from unibatch.storages._base import PathLike


def open_hdf5_as_replay_buffer(
    path: PathLike, backend: ComputeBackend, *, group: str = "/", device: Any = None
) -> ReplayBuffer:
    """The datasets under ``group`` of any HDF5 file (``"data/demo_0"`` of robomimic) as a read-only buffer.

    Datasets whose length differs from the others are left out and listed in
    ``buffer.storage.skipped_datasets``.

    >>> import tempfile, h5py, numpy as np
    >>> from pathlib import Path
    >>> from unibatch import NumpyComputeBackend as np_backend
    >>> path = Path(tempfile.mkdtemp()) / "demo.hdf5"
    >>> with h5py.File(path, "w") as file:
    ...     file["data/demo_0/actions"] = np.zeros((4, 7))
    ...     file["data/demo_0/obs/eef_pos"] = np.ones((4, 3))
    >>> buffer = open_hdf5_as_replay_buffer(path, np_backend, group="data/demo_0")
    >>> len(buffer), buffer.get_at(np.array([3, 1]))["obs"]["eef_pos"].shape
    (4, (2, 3))
    >>> buffer.close()
    """
    from unibatch.storages.hdf5 import open_hdf5_storage

    return _whole(open_hdf5_storage(path, backend, group=group, device=device))


def open_parquet_as_replay_buffer(
    path: PathLike, backend: ComputeBackend, *, device: Any = None, columns: Sequence[str] | None = None
) -> ReplayBuffer:
    """A Parquet file or a directory of them (LeRobot ``data/``, pandas) as a read-only buffer, a key per column.

    Args:
        path: a ``.parquet`` file, or a directory searched recursively (files in sorted path order).
        backend: backend of the values read.
        device: device of the values read.
        columns: the columns to include (default: all; each must have a supported type).
    """
    from unibatch.storages.parquet import open_parquet_storage

    return _whole(open_parquet_storage(path, backend, device=device, columns=columns))


def _whole(storage: SpaceStorage) -> ReplayBuffer:
    """A read-only buffer over every row of ``storage``."""
    return ReplayBuffer(storage, "storage" + (storage.single_file_ext or ""), count=len(storage), offset=0)
