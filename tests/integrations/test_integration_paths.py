"""Issue 16 §1 for the integrations that reopen persisted state: a Ray buffer host and a local EpisodeStore.

Both go through the same checks as ``load_from``; these tests pin that no path of theirs bypasses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.errors import UnsafePathError
from unibatch.spaces import BoxSpace, space_to_json

NUMPY = backend_from_name("numpy")
SPACE = BoxSpace(NUMPY, -10.0, 10.0, "float32", shape=(3,))


def tree_digest(root: Path) -> dict[str, str]:
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            data = (Path(folder) / name).read_bytes()
            digests[os.path.relpath(Path(folder) / name, root)] = hashlib.sha256(data).hexdigest()
    return digests


def test_ray_buffer_host_restarting_on_an_escaping_buffer_is_refused(tmp_path: Path) -> None:
    from unibatch.integrations.ray import BufferHost, BufferSpec

    for name, value in (("victim", 1.0), ("hosted", 2.0)):
        with ReplayBuffer.create(None, SPACE, capacity=8, cache_path=tmp_path / name) as buffer:
            buffer.extend(np.full((4, 3), value, np.float32))
            buffer.flush()
    metadata = tmp_path / "hosted" / "metadata.json"
    payload = json.loads(metadata.read_text())
    payload["storage"]["path"] = "../victim/storage"
    metadata.write_text(json.dumps(payload))
    before = tree_digest(tmp_path / "victim")
    with pytest.raises(UnsafePathError, match="victim"):
        BufferHost(BufferSpec("replay", space_to_json(SPACE), str(tmp_path / "hosted"), 8))  # a restarted actor
    assert tree_digest(tmp_path / "victim") == before


def test_local_episode_store_never_writes_or_reads_through_a_symlinked_producer_directory(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    from unibatch.integrations.object_store import EpisodeStore

    root = tmp_path / "dataset"
    writer = EpisodeStore.create(str(root), SPACE, compression=None).writer("p")
    (root / "committed").mkdir()  # object stores need no directories; a local file system does
    writer.extend(np.full((3, 3), 1.0, np.float32))
    first = writer.end_episode()
    assert first is not None
    victim = tmp_path / "victim"
    shutil.move(root / "episodes" / "p", victim)
    (victim / "00000001").mkdir()
    (victim / "00000001" / "keep.txt").write_text("precious")
    (root / "episodes" / "p").symlink_to(victim, target_is_directory=True)
    before = tree_digest(victim)
    writer.extend(np.full((2, 3), 2.0, np.float32))
    with pytest.raises(UnsafePathError, match="symlink"):
        writer.end_episode()  # would delete the "leftover" victim/00000001, then write there
    assert tree_digest(victim) == before
    reader = EpisodeStore.open(str(root))
    with pytest.raises(UnsafePathError, match="symlink"):
        reader.read_episode(first)
