"""``BatchSampler``: a read-only batch whose samples are mini-batches drawn from ``data``.

``sample*()`` draw with replacement; the four ``epoch_*`` iterators walk one random permutation
in batches (the last one smaller), all through one private generator. The random state and the
position inside an epoch are checkpointed by :meth:`BatchSampler.state_dict`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic

import numpy as np

from unibatch._typing import (
    Array,
    BArrayType,
    BatchT,
    BDeviceType,
    BDtypeType,
    BRNGType,
    SamplerArrayType,
    SamplerBatchT,
    SamplerDeviceType,
    SamplerDtypeType,
    SamplerRNGType,
)
from unibatch.backends import convert_tree
from unibatch.batches import BatchBase
from unibatch.batches._base import Metadata
from unibatch.batches._indexing import NormalizedIndex
from unibatch.errors import SpaceMismatchError
from unibatch.samplers._indices import epoch_slices, uniform_indices
from unibatch.spaces import DictSpace, Space, batch_space
from unibatch.storages._outputs import OutputArena, arena_context


class BatchSampler(
    BatchBase[SamplerBatchT, SamplerArrayType, SamplerDeviceType, SamplerDtypeType, SamplerRNGType],
    Generic[
        SamplerBatchT,
        SamplerArrayType,
        SamplerDeviceType,
        SamplerDtypeType,
        SamplerRNGType,
        BatchT,
        BArrayType,
        BDeviceType,
        BDtypeType,
        BRNGType,
    ],
):
    """Read-only batch wrapper that samples mini-batches from another batch (``data``).

    Subclasses set :attr:`data` and a random state (:attr:`data_rng`, or :attr:`rng`).
    ``len(sampler)`` is the number of source samples, as in the reference.
    """

    is_mutable = False
    rng: Any = None
    data_rng: Any = None
    output_arena: OutputArena | None = None
    """Set by ``reuse_outputs=N``: storage gathers write into buffers reused every N calls."""

    def __init__(
        self, single_space: Space, single_metadata_space: DictSpace | None = None, batch_size: int = 1
    ) -> None:
        if int(batch_size) <= 0:
            raise SpaceMismatchError(f"batch_size must be positive, got {batch_size}")
        super().__init__(single_space, single_metadata_space)
        self.batch_size = int(batch_size)
        self.data: BatchBase = None  # type: ignore[assignment]  # bound by the subclass
        self._seed: int | None = None
        self._epoch: dict[str, Any] | None = None  # {"permutation": np.ndarray, "position": int}

    # ------------------------------------------------------------------ spaces and reads
    @property
    def sampled_space(self) -> Space:
        """The space of one sampled batch: ``batch_space(single_space, batch_size)``."""
        return batch_space(self.single_space, self.batch_size)

    @property
    def sampled_metadata_space(self) -> DictSpace | None:
        space = self.single_metadata_space
        return None if space is None else batch_space(space, self.batch_size)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.data)

    def _to_output(self, tree: Any) -> Any:
        """Results on the sampler's backend and device (a no-op when they are the data's)."""
        converts = self.__dict__.get("_converts_output")
        if converts is None:  # backends and devices are fixed at construction: decided once
            converts = self.__dict__["_converts_output"] = not (
                self.backend is self.data.backend and self.device == self.data.device
            )
        return convert_tree(tree, self.backend, self.device) if converts else tree

    def _get(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Any, Metadata]:
        data, metadata = self.data._get(self._data_index(index), with_metadata)
        return self._to_output(data), self._to_output(metadata)

    def _get_flattened(self, index: NormalizedIndex, with_metadata: bool) -> tuple[Array, Metadata]:
        data, metadata = self.data._get_flattened(self._data_index(index), with_metadata)
        return self._to_output(data), self._to_output(metadata)

    def _data_index(self, index: NormalizedIndex) -> NormalizedIndex:
        if isinstance(index, int) or (self.backend is self.data.backend and self.device == self.data.device):
            return index
        return convert_tree(index, self.data.backend, self.data.device)

    # ------------------------------------------------------------------ randomness
    def manual_seed(self, seed: int) -> None:
        """Reset the random state(s) from ``seed`` (also forgets an unfinished epoch)."""
        self._seed = int(seed)
        if self.rng is not None:
            self.rng = self.backend.random_number_generator(seed, device=self.device)
        if self.data_rng is not None:
            self.data_rng = self.data.backend.random_number_generator(seed, device=self.data.device)
        self._epoch = None

    def _draw(self, draw: Any) -> Any:
        """Run ``draw(backend, rng, device) -> (rng, value)`` on ``data_rng`` if set, else ``rng``."""
        if self.data_rng is not None:
            self.data_rng, value = draw(self.data.backend, self.data_rng, self.data.device)
        else:
            self.rng, value = draw(self.backend, self.rng, self.device)
        return value

    def sample_index(self) -> Array:
        """Indices of one batch: ``batch_size`` draws with replacement from ``[0, len(data))``."""
        data, size = self.data, self.batch_size
        if self.data_rng is not None:  # (the hot path of every sample: no closure, no dispatch)
            self.data_rng, index = uniform_indices(data.backend, self.data_rng, len(data), size, data.device)
            return index
        self.rng, index = uniform_indices(self.backend, self.rng, len(data), size, self.device)
        return index

    # ------------------------------------------------------------------ sampling
    def sample(self) -> Any:
        """One structured batch (``sampled_space``)."""
        with arena_context(self.output_arena):
            data = self.data._get(self.sample_index(), False)[0]
        return self._output(data)

    def sample_with_metadata(self) -> tuple[Any, Metadata]:
        with arena_context(self.output_arena):
            data, metadata = self.data._get(self.sample_index(), True)
        return self._output(data), self._output(metadata)

    def sample_flat(self) -> Any:
        """One batch flattened to ``(batch_size, D)``."""
        with arena_context(self.output_arena):
            return self._output(self.data._get_flattened(self.sample_index(), False)[0])

    def sample_flat_with_metadata(self) -> tuple[Any, Metadata]:
        with arena_context(self.output_arena):
            data, metadata = self.data._get_flattened(self.sample_index(), True)
        return self._output(data), self._output(metadata)

    def _output(self, tree: Any) -> Any:
        return self._to_output(tree)

    # ------------------------------------------------------------------ epochs
    def _permutation(self) -> np.ndarray:
        length = len(self.data)
        permutation = self._draw(
            lambda backend, rng, device: backend.random_permutation(length, rng=rng, device=device)
        )
        return np.asarray(self.data.backend.to_numpy(permutation))

    def _epoch_batches(self, flat: bool, with_metadata: bool) -> Iterator[Any]:
        """The one generator behind the four ``epoch_*`` iterators (resumes a checkpointed epoch)."""
        if self._epoch is None:
            self._epoch = {"permutation": self._permutation(), "position": 0}
        epoch = self._epoch
        permutation = epoch["permutation"]
        backend = self.data.backend
        for part in epoch_slices(len(permutation), self.batch_size, epoch["position"]):
            index = backend.asarray(permutation[part], dtype=backend.default_index_dtype, device=self.data.device)
            read = self.data._get_flattened if flat else self.data._get
            with arena_context(self.output_arena):
                data, metadata = read(index, with_metadata)
            epoch["position"] = part.stop
            if part.stop >= len(permutation):
                self._epoch = None
            yield (self._output(data), self._output(metadata)) if with_metadata else self._output(data)
        self._epoch = None

    def epoch_iter(self) -> Iterator[Any]:
        """Iterate once over a random permutation of the source data (structured batches)."""
        return self._epoch_batches(flat=False, with_metadata=False)

    def epoch_iter_with_metadata(self) -> Iterator[tuple[Any, Metadata]]:
        return self._epoch_batches(flat=False, with_metadata=True)

    def epoch_flat_iter(self) -> Iterator[Any]:
        return self._epoch_batches(flat=True, with_metadata=False)

    def epoch_flat_iter_with_metadata(self) -> Iterator[tuple[Any, Metadata]]:
        return self._epoch_batches(flat=True, with_metadata=True)

    def __iter__(self) -> Iterator[Any]:
        return self.epoch_iter()

    # ------------------------------------------------------------------ pickling (worker processes)
    def __getstate__(self) -> dict[str, Any]:
        """Random states travel as plain snapshots (a torch.Generator does not cross ``spawn``)."""
        state = dict(self.__dict__)
        for key, backend in (("rng", self.backend), ("data_rng", self.data.backend if self.data is not None else None)):
            if state.get(key) is not None and backend is not None:
                state[key] = ("rng-state", backend.simplified_name, backend.rng_state(state[key]))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from unibatch.backends import backend_from_name

        for key in ("rng", "data_rng"):
            value = state.get(key)
            if isinstance(value, tuple) and value and value[0] == "rng-state":
                state[key] = backend_from_name(value[1]).rng_from_state(value[2])
        self.__dict__.update(state)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The random state(s) and the position in an unfinished epoch (picklable)."""
        return {
            "rng": None if self.rng is None else self.backend.rng_state(self.rng),
            "data_rng": None if self.data_rng is None else self.data.backend.rng_state(self.data_rng),
            "epoch": None if self._epoch is None else dict(self._epoch),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next batches are the ones the checkpointed sampler would give."""
        if state.get("rng") is not None:
            self.rng = self.backend.rng_from_state(state["rng"], self.device)
        if state.get("data_rng") is not None:
            self.data_rng = self.data.backend.rng_from_state(state["data_rng"], self.data.device)
        epoch = state.get("epoch")
        self._epoch = (
            None
            if epoch is None
            else {"permutation": np.asarray(epoch["permutation"]), "position": int(epoch["position"])}
        )
