"""The PyTorch bridge: DataLoader over a batch (workers, pin_memory, batched reads) and back."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from unibatch import BoxSpace, DictSpace, ReplayBuffer  # noqa: E402
from unibatch.backends import backend_from_name  # noqa: E402
from unibatch.integrations.torch_data import (  # noqa: E402
    BatchDataset,
    SamplerDataset,
    TorchDatasetBatch,
    data_loader,
    keep_batched,
)
from unibatch.samplers import StepSampler  # noqa: E402

NUMPY = backend_from_name("numpy")
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def buffer(tmp_path, n=40):
    space = DictSpace(
        NUMPY, {"x": BoxSpace(NUMPY, 0, 1000, "int64"), "v": BoxSpace(NUMPY, -1, 1, "float32", shape=(2,))}
    )
    rb = ReplayBuffer.create(None, space, capacity=n, cache_path=tmp_path / "rb")
    rb.extend({"x": np.arange(n), "v": np.zeros((n, 2), np.float32)})
    rb.flush()
    return rb


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true but no accelerator:UserWarning")
@pytest.mark.parametrize(("workers", "pin_memory"), [(0, False), (2, False), (2, True)])
def test_data_loader_round_trip(tmp_path, workers, pin_memory):
    rb = buffer(tmp_path)
    loader = data_loader(rb, batch_size=16, shuffle=True, num_workers=workers, pin_memory=pin_memory)
    seen = []
    for batch in loader:
        assert isinstance(batch["x"], torch.Tensor) and batch["v"].shape[1:] == (2,)
        seen += batch["x"].tolist()
    assert sorted(seen) == list(range(40))
    with_metadata = BatchDataset(rb, include_metadata=True)
    data, metadata = keep_batched(with_metadata.__getitems__([3, 1]))
    assert data["x"].tolist() == [3, 1] and metadata is None


@pytest.mark.parametrize("workers", [0, 2])
def test_a_plain_data_loader_with_torch_default_collate(tmp_path, workers):
    """``DataLoader(BatchDataset(buf), batch_size=4)``: torch's own collate gets the rows of the gather."""
    rb = buffer(tmp_path)
    rb.set_at(np.arange(40), {"x": np.arange(40), "v": np.stack([np.arange(40), -np.arange(40)], 1) / 40})
    loader = torch.utils.data.DataLoader(BatchDataset(rb), batch_size=4, shuffle=True, num_workers=workers)
    seen = []
    for batch in loader:
        assert batch["x"].shape == (4,) and batch["v"].shape == (4, 2) and batch["v"].dtype == torch.float32
        torch.testing.assert_close(batch["v"][:, 0], batch["x"].float() / 40)
        seen += batch["x"].tolist()
    assert sorted(seen) == list(range(40))
    rows = BatchDataset(rb).__getitems__([5, 7])
    assert len(rows) == 2 and rows[1]["x"].item() == 7 and [row["x"].item() for row in rows] == [5, 7]
    with pytest.raises(IndexError, match="row 2 of a DataLoader batch of 2 rows"):
        rows[2]


def test_sampler_dataset_gives_each_worker_its_own_stream(tmp_path):
    rb = buffer(tmp_path)
    loader = torch.utils.data.DataLoader(
        SamplerDataset(StepSampler(rb, 8, seed=1), batches=3), batch_size=None, num_workers=2
    )
    batches = [tuple(b["x"].tolist()) for b in loader]
    assert len(batches) == 6 and len(set(batches)) == 6


def test_torch_dataset_as_a_batch():
    dataset = torch.utils.data.TensorDataset(torch.arange(10.0), torch.arange(10) * 2)
    batch = TorchDatasetBatch(dataset)
    assert len(batch) == 10
    first, second = batch.get_at([4, 1])
    assert first.tolist() == [4.0, 1.0] and second.tolist() == [8, 2]
    assert batch.get_at(-1)[1].item() == 18
