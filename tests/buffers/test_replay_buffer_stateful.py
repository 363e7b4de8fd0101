"""A hypothesis state machine drives a ``ReplayBuffer`` against a plain list of row numbers.

One machine per backend x storage (memory, memmap) x size (fixed capacity, growable). Rules:
append, extend (also larger than the capacity), set_at, clear, dumps + load_from into a fresh
object, and reads with int / negative / NumPy int / slice / ... / list / backend array / mask
indices (structured, and flattened where the space has a flat form).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from unibatch.backends import backend_from_name
from unibatch.buffers import ReplayBuffer
from unibatch.spaces import batch_space, concatenate, flatten_data
from unibatch.storages import MemoryStorage
from unibatch.testing.conformance import assert_tree_equal, index_expressions, positions, stack_samples
from unibatch.testing.storage_conformance import storage_sample, storage_space


def make_machine(backend_name: str, kind: str, growable: bool) -> type[RuleBasedStateMachine]:
    text = kind == "memmap"  # memmap machines store a text leaf; memory machines check flat reads

    class ReplayBufferMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.backend = backend_from_name(backend_name)
            self.space = storage_space(self.backend, text)
            self.root = Path(tempfile.mkdtemp(prefix="unibatch-stateful-"))
            self.buffer: ReplayBuffer | None = None
            self.model: list[int] = []
            self.capacity: int | None = None
            self.serial = 0
            self.generation = 0

        # ------------------------------------------------------------------ helpers
        def new_ids(self, n: int) -> list[int]:
            ids = list(range(self.serial, self.serial + n))
            self.serial += n
            return ids

        def sample(self, i: int):
            return storage_sample(self.backend, i % 1000, text)

        def batch(self, ids: list[int]):
            return concatenate(self.space, [self.sample(i) for i in ids])

        def keep_last(self) -> None:
            if self.capacity is not None:
                self.model = self.model[-self.capacity :]

        def index_form(self, data: st.DataObject, length: int):
            """An index, and the same index in a form :func:`positions` reads (for the oracle)."""
            index = data.draw(index_expressions(length), label="index")
            as_backend = data.draw(st.booleans(), label="as backend array")
            if as_backend and isinstance(index, list):
                array = np.asarray(index, dtype=np.int64)
                return self.backend.asarray(array, dtype=self.backend.default_index_dtype), array
            if as_backend and isinstance(index, np.ndarray):
                return self.backend.asarray(index), index
            return index, index

        # ------------------------------------------------------------------ rules
        @initialize(capacity=st.sampled_from([2, 5]) if backend_name == "jax" else st.integers(1, 6))
        def create(self, capacity: int) -> None:
            self.capacity = None if growable else capacity
            if kind == "memory":
                self.buffer = ReplayBuffer.create(MemoryStorage, self.space, capacity=self.capacity, initial_rows=8)
            else:
                path = self.root / "rb0"
                self.buffer = ReplayBuffer.create(
                    None, self.space, cache_path=path, capacity=self.capacity, initial_rows=2
                )

        @rule()
        def append(self) -> None:
            (i,) = self.new_ids(1)
            self.buffer.append(self.sample(i))
            self.model.append(i)
            self.keep_last()

        @rule(n=st.integers(1, 9))
        def extend(self, n: int) -> None:
            ids = self.new_ids(n)
            self.buffer.extend(self.batch(ids))
            self.model += ids
            self.keep_last()

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def set_at(self, data: st.DataObject) -> None:
            n = len(self.model)
            form = data.draw(st.sampled_from(["int", "slice", "list", "mask"]), label="form")
            if form == "int":
                index = data.draw(st.integers(-n, n - 1), label="index")
                (i,) = self.new_ids(1)
                self.buffer.set_at(index, self.sample(i))
                self.model[index] = i
                return
            if form == "slice":
                index = data.draw(st.slices(n), label="index")
                chosen = list(range(n))[index]
            elif form == "list":
                chosen = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n), label="positions")
                index = self.backend.asarray(np.asarray(chosen, dtype=np.int64), dtype=self.backend.default_index_dtype)
            else:
                mask = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="mask")
                chosen = [p for p, m in enumerate(mask) if m]
                index = np.asarray(mask, dtype=bool)
            ids = self.new_ids(len(chosen))
            if not ids:
                return
            self.buffer.set_at(index, self.batch(ids))
            for position, i in zip(chosen, ids):
                self.model[position] = i

        @rule(skip=st.integers(0, 3))
        def clear(self, skip: int) -> None:
            if skip:  # clear one time in four, so that rings fill and wrap between clears
                return
            self.buffer.clear()
            self.model = []

        @rule(own_path=st.booleans())
        def dumps_and_reload(self, own_path: bool) -> None:
            """dumps (to its own directory: a flush) then continue with a freshly loaded object."""
            self.generation += 1
            own = own_path and kind == "memmap"  # a memory-backed buffer flushes a snapshot, not in place
            target = self.buffer.cache_path if own else self.root / f"rb{self.generation}"
            self.buffer.dumps(target)
            count, offset = self.buffer.count, self.buffer.offset
            self.buffer.close()
            self.buffer = None
            assert ReplayBuffer.get_length_from_path(target) == len(self.model)
            assert ReplayBuffer.get_capacity_from_path(target) == self.capacity
            self.buffer = ReplayBuffer.load_from(target, backend=self.backend, read_only=False)
            assert (self.buffer.count, self.buffer.offset) == (count, offset)
            assert self.buffer.capacity == self.capacity

        @rule(data=st.data())
        def read(self, data: st.DataObject) -> None:
            n = len(self.model)
            index, oracle_index = self.index_form(data, n)
            chosen, single = positions(oracle_index, n)
            got = self.buffer.get_at(index)
            if single:
                assert_tree_equal(got, self.sample(self.model[chosen[0]]))
            elif chosen:
                assert_tree_equal(got, stack_samples([self.sample(self.model[p]) for p in chosen]))
            if not text:
                flat = self.buffer.get_flattened_at(index)
                if single:
                    assert_tree_equal(flat, flatten_data(self.space, got))
                else:
                    assert tuple(flat.shape)[0] == len(chosen)
                    if chosen:
                        assert_tree_equal(flat, flatten_data(batch_space(self.space, 1), got, start_dim=1))

        @rule()
        def read_everything(self) -> None:
            if self.model:
                assert_tree_equal(self.buffer.get_at(...), stack_samples([self.sample(i) for i in self.model]))
                assert_tree_equal(self.buffer.get_at(-1), self.sample(self.model[-1]))

        # ------------------------------------------------------------------ invariants
        @invariant()
        def ring_state_and_contents(self) -> None:
            if self.buffer is None:
                return
            assert len(self.buffer) == self.buffer.count == len(self.model)
            if self.capacity is None:
                assert self.buffer.offset == 0
            else:
                assert 0 <= self.buffer.offset < self.capacity
            # Every row after every step (JAX compiles per length: long growable buffers are left to reads).
            if self.model and (backend_name != "jax" or len(self.model) <= 8):
                assert_tree_equal(self.buffer.get_at(slice(None)), stack_samples([self.sample(i) for i in self.model]))

        def teardown(self) -> None:
            if self.buffer is not None:
                self.buffer.close()
            shutil.rmtree(self.root, ignore_errors=True)

    ReplayBufferMachine.__name__ = f"ReplayBufferMachine_{backend_name}_{kind}_{'growable' if growable else 'fixed'}"
    return ReplayBufferMachine


def _settings(backend_name: str) -> settings:
    # JAX compiles a kernel per new array shape, so its machines run fewer, shorter programs.
    examples, steps = (8, 15) if backend_name == "jax" else (25, 30)
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.mark.parametrize("growable", [False, True], ids=["fixed", "growable"])
@pytest.mark.parametrize("kind", ["memory", "memmap"])
@pytest.mark.parametrize("backend_name", ["numpy", "torch", "jax"])
def test_replay_buffer_state_machine(backend_name, kind, growable):
    if backend_name != "numpy":
        pytest.importorskip(backend_name)
    machine = make_machine(backend_name, kind, growable)
    machine.TestCase.settings = _settings(backend_name)
    machine.TestCase("runTest").runTest()
