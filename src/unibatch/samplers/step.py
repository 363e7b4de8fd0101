"""``StepSampler``: uniform i.i.d. mini-batches of steps from any batch."""

from __future__ import annotations

from typing import Any

from unibatch._typing import BArrayType, BatchT, BDeviceType, BDtypeType, BRNGType, Device
from unibatch.batches import BatchBase
from unibatch.samplers.base import BatchSampler
from unibatch.storages._outputs import OutputArena


class StepSampler(
    BatchSampler[
        BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType, BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType
    ]
):
    """Mini-batches of ``batch_size`` samples of ``data``, optionally delivered on ``device``.

    Indices are drawn on the data's device with a random state seeded by ``seed`` (None: from
    the operating system). Sampler-made indices skip the bounds checks of user indices.

    ``reuse_outputs=N`` (opt-in): the rows gathered from NumPy/PyTorch memory and memmap storages
    are written into buffers that are reused every N calls, so a batch stays valid until N more
    batches have been drawn; a large batch then costs no fresh page faults (DESIGN §6).

    >>> from unibatch.testing import InMemoryBatch
    >>> sampler = StepSampler(InMemoryBatch.from_range(10), batch_size=4, seed=0)
    >>> sampler.sample()["x"].shape, sorted(int(x) for b in sampler.epoch_iter() for x in b["x"])
    ((4,), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """

    def __init__(
        self,
        data: BatchBase,
        batch_size: int,
        seed: int | None = None,
        device: Device | None = None,
        reuse_outputs: int = 0,
    ) -> None:
        metadata = data.single_metadata_space
        super().__init__(
            data.single_space if device is None else data.single_space.to(device=device),
            metadata if metadata is None or device is None else metadata.to(device=device),
            batch_size,
        )
        self.data = data
        self._device = device
        self._seed = seed
        self.data_rng = data.backend.random_number_generator(seed, device=data.device)
        if reuse_outputs:
            self.output_arena = OutputArena(reuse_outputs)

    @property
    def backend(self) -> Any:
        return self.data.backend

    @property
    def device(self) -> Any:
        return self._device if self._device is not None else self.data.device
