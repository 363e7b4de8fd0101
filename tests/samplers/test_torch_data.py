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
    data, metadata = with_metadata.__getitems__([3, 1])
    assert data["x"].tolist() == [3, 1] and metadata is None


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
