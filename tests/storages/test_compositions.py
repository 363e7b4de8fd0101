"""The storage conformance suite on the four compositions, plus what is specific to each."""

from __future__ import annotations

import json

import numpy as np
import pytest

import unibatch.storages as storages
from unibatch import ReplayBuffer
from unibatch.backends import NumpyComputeBackend, backend_from_name, convert_tree, get_backend
from unibatch.errors import (
    FormatVersionError,
    SpaceMismatchError,
    UnknownNameError,
    UnsafePathError,
    UnsupportedOperationError,
    UnsupportedSpaceError,
)
from unibatch.spaces import BoxSpace, DictSpace, TextSpace, batch_space, concatenate, flatten_data, flatten_space
from unibatch.storages import (
    DictStorage,
    FlattenedStorage,
    MemmapStorage,
    MemoryStorage,
    ToBackendOrDeviceStorage,
    TransformedStorage,
    storage_class,
)
from unibatch.testing.conformance import assert_tree_equal, stack_samples
from unibatch.testing.storage_conformance import StorageTests, storage_sample, storage_space
from unibatch.transformations import (
    DictIncludeTransformation,
    DictTransformation,
    RescaleTransformation,
    transformation_to_json,
)


def image_to_unit() -> DictTransformation:
    """uint8 ``obs/image`` -> float32 in [0, 1]; the way back is exact for uint8."""
    return DictTransformation({"obs": DictTransformation({"image": RescaleTransformation(0.0, 1.0, "float32")})})


def to_numpy(x):
    return np.asarray(get_backend(x).to_numpy(x))


# ---------------------------------------------------------------------- conformance
class TestFlattenedOverMemory(StorageTests):
    backends = ("numpy", "pytorch")  # JAX + memory inner: covered by TestDictImageMemmapRestMemory

    def make_storage(self, backend, space, capacity, path):
        return FlattenedStorage.create(
            space, MemoryStorage, capacity=capacity, cache_path=path, inner_storage_kwargs={"initial_rows": 4}
        )


class TestFlattenedOverMemmap(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return FlattenedStorage.create(space, "memmap", capacity=capacity, cache_path=path, initial_rows=4)


class TestDictImageMemmapRestMemory(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return DictStorage.create(
            space, {"obs/image": MemmapStorage, "*": MemoryStorage}, capacity=capacity, cache_path=path, initial_rows=4
        )


class TestDictAllMemmap(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return DictStorage.create(
            space, {"obs/image": MemmapStorage, "*": MemmapStorage}, capacity=capacity, cache_path=path, initial_rows=4
        )


class TestDictPrefixResidual(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        storage_map = {"obs.*": "memmap", "*": "memory"}
        return DictStorage.create(
            space,
            storage_map,
            capacity=capacity,
            cache_path=path,
            nested_separator=".",
            type_kwargs={"memory": {"initial_rows": 4}},
        )


class TestTransformedOverMemmap(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return TransformedStorage.create(
            space,
            MemmapStorage,
            data_transformation=image_to_unit(),
            capacity=capacity,
            cache_path=path,
            initial_rows=4,
        )


class TestTransformedOverMemory(StorageTests):
    backends = ("numpy", "pytorch")

    def make_storage(self, backend, space, capacity, path):
        return TransformedStorage.create(
            space, "memory", data_transformation=image_to_unit(), capacity=capacity, cache_path=path
        )


class TestNumpyMemmapSeenFromEveryBackend(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return ToBackendOrDeviceStorage.create(
            space, MemmapStorage, capacity=capacity, cache_path=path, backend=NumpyComputeBackend, initial_rows=4
        )


class TestNumpyMemorySeenFromEveryBackend(StorageTests):
    def make_storage(self, backend, space, capacity, path):
        return ToBackendOrDeviceStorage.create(
            space, MemoryStorage, capacity=capacity, cache_path=path, backend=NumpyComputeBackend
        )


# ---------------------------------------------------------------------- registry
def test_registered_names_and_lazy_attributes():
    expected = {
        "flattened": FlattenedStorage,
        "dict": DictStorage,
        "transformed": TransformedStorage,
        "backend": ToBackendOrDeviceStorage,
    }
    for name, cls in expected.items():
        assert storage_class(name) is cls and cls.registered_name == name
        assert getattr(storages, cls.__name__) is cls


# ---------------------------------------------------------------------- FlattenedStorage
def test_flattened_rows_pass_through(backend, tmp_path):
    space = storage_space(backend, text=False)
    storage = FlattenedStorage.create(space, MemmapStorage, capacity=4, cache_path=tmp_path / "s")
    samples = [storage_sample(backend, i, text=False) for i in range(4)]
    storage.set(slice(0, 4), concatenate(space, samples))
    assert storage.inner.single_instance_space == flatten_space(space)
    index = backend.asarray([2, 0], dtype=backend.default_index_dtype)
    flat = storage.get_flattened(index)
    assert np.array_equal(to_numpy(flat), to_numpy(storage.inner.get(index)))
    assert np.array_equal(
        to_numpy(flat),
        to_numpy(flatten_data(batch_space(space, 1), concatenate(space, [samples[2], samples[0]]), start_dim=1)),
    )
    storage.set_flattened(1, storage.get_flattened(3))
    assert_tree_equal(storage.get(1), samples[3])
    sidecar = json.loads((tmp_path / "s" / "flattened.json").read_text())
    assert sidecar == {"format_version": 1, "inner": {"name": "memmap", "path": "inner_storage"}}
    storage.close()


def test_flattened_errors(backend):
    space = storage_space(backend)
    wrong = MemoryStorage.create(BoxSpace(backend, 0, 1, "float32", shape=(3,)), capacity=2)
    with pytest.raises(SpaceMismatchError, match="inner storage must hold"):
        FlattenedStorage(space, wrong)
    free_text = DictSpace(backend, {"note": TextSpace(backend, 4)})
    with pytest.raises(UnsupportedSpaceError, match="cannot flatten"):
        FlattenedStorage.create(free_text, MemoryStorage, capacity=2)
    with pytest.raises(UnknownNameError, match="unknown storage 'tape'"):
        FlattenedStorage.create(space, "tape", capacity=2)
    with pytest.raises(TypeError, match="expected a SpaceStorage class or a registered name, got 3"):
        FlattenedStorage.create(space, 3, capacity=2)


# ---------------------------------------------------------------------- DictStorage
def make_dict_storage(backend, path=None, text=True, capacity=4):
    space = storage_space(backend, text)
    storage = DictStorage.create(
        space, {"obs/image": MemmapStorage, "*": MemoryStorage}, capacity=capacity, cache_path=path
    )
    samples = [storage_sample(backend, i, text) for i in range(capacity)]
    storage.set(slice(0, capacity), concatenate(space, samples))
    return space, storage, samples


def test_dict_flat_layout_is_flatten_data(backend, tmp_path):
    space, storage, samples = make_dict_storage(backend, tmp_path / "s", text=False)
    index = backend.asarray([3, 1], dtype=backend.default_index_dtype)
    flat = to_numpy(storage.get_flattened(index))
    expected = to_numpy(flatten_data(batch_space(space, 1), concatenate(space, [samples[3], samples[1]]), start_dim=1))
    assert np.array_equal(flat, expected)
    assert np.array_equal(to_numpy(storage.get_flattened(2)), to_numpy(flatten_data(space, samples[2])))
    # sorted keys: action (2), done (1), obs/image (48), obs/state (5) -- image sits between residual leaves
    assert flat.shape == (2, 56)
    assert np.array_equal(flat[0, 3:51], np.full(48, 3, np.float32))
    assert np.array_equal(flat[0, 51:], to_numpy(samples[3]["obs"]["state"]))
    storage.set_flattened(index, storage.get_flattened(backend.asarray([0, 2], dtype=backend.default_index_dtype)))
    assert_tree_equal(storage.get(3), samples[0])
    storage.close()


def test_dict_routes_and_children(backend):
    space = storage_space(backend)
    storage = DictStorage.create(space, {"obs/image": "memory", "obs/*": "memory", "*": "memory"}, capacity=2)
    children = storage.children
    assert sorted(children) == ["*", "obs/*", "obs/image"]
    assert list(children["obs/*"].single_instance_space.keys()) == ["state"]
    assert list(children["*"].single_instance_space.keys()) == ["action", "done", "note"]
    assert list(storage.get(0).keys()) == ["action", "done", "note", "obs"]
    # a residual that nothing is left for gets no child; a whole subtree may be one child
    storage = DictStorage.create(
        space, {"obs": "memory", "action": "memory", "*": "memory", "obs/*": "memory"}, capacity=2
    )
    assert sorted(storage.children) == ["*", "action", "obs"]


def test_dict_columns(backend, tmp_path):
    space, storage, samples = make_dict_storage(backend, tmp_path / "s")
    assert storage.get_column(["obs", "image"]) is storage.children["obs/image"]
    action = storage.get_column(["action"])  # a key inside the "*" residual
    assert action.single_instance_space == space["action"] and len(action) == 4
    assert_tree_equal(action.get(slice(0, 4)), stack_samples([s["action"] for s in samples]))
    action.set(1, samples[3]["action"])
    assert_tree_equal(storage.get(1), {**samples[1], "action": samples[3]["action"]})
    obs = storage.get_column(["obs"])  # spans the image child and the residual's obs/state
    assert obs.single_instance_space == space["obs"]
    assert_tree_equal(obs.get(2), samples[2]["obs"])
    assert_tree_equal(obs.get_column(["state"]).get(0), samples[0]["obs"]["state"])
    assert_tree_equal(storage.get_column("obs/state").get(3), samples[3]["obs"]["state"])
    with pytest.raises(SpaceMismatchError, match="column 'obs/depth' does not exist"):
        storage.get_column(["obs", "depth"])
    with pytest.raises(SpaceMismatchError, match="column 'obs/image/x' does not exist"):
        storage.get_column(["obs", "image", "x"])
    with pytest.raises(SpaceMismatchError, match="column 'action/x' does not exist"):
        storage.get_column(["action", "x"])
    with pytest.raises(UnsupportedOperationError, match="column view cannot be persisted"):
        obs.dumps(tmp_path / "view")
    obs.close()
    action.close()
    assert_tree_equal(storage.get(0), samples[0])  # views never close what they view
    storage.close()


def test_dict_columns_through_replay_buffer(backend, tmp_path):
    space = storage_space(backend)
    buffer = ReplayBuffer.create(
        DictStorage, space, {"obs/image": MemmapStorage, "*": MemmapStorage}, cache_path=tmp_path / "rb", capacity=3
    )
    samples = [storage_sample(backend, i) for i in range(5)]
    buffer.extend(concatenate(space, samples))  # wraps around
    note = buffer.get_column(["note"])
    assert list(note.get_at(slice(None))) == [s["note"] for s in samples[2:]]
    assert_tree_equal(buffer.get_at(0), samples[2])
    buffer.close()


def test_dict_creation_errors(backend, tmp_path):
    space = storage_space(backend)
    with pytest.raises(SpaceMismatchError, match=r"no storage for key paths \['action', 'done', 'note', 'obs/state'\]"):
        DictStorage.create(space, {"obs/image": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match="'obs/depth' is not in the space"):
        DictStorage.create(space, {"obs/depth": MemoryStorage, "*": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match="overlap"):
        DictStorage.create(space, {"obs": MemoryStorage, "obs/image": MemoryStorage, "*": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match="expected 'a/b', '\\*' or 'prefix/\\*'"):
        DictStorage.create(space, {"obs/*/image": MemoryStorage, "*": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match="residual needs a DictSpace"):
        DictStorage.create(space, {"action/*": MemoryStorage, "*": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match="stores a DictSpace, got BoxSpace"):
        DictStorage.create(BoxSpace(backend, 0, 1, "float32", shape=(2,)), {"*": MemoryStorage}, capacity=2)
    with pytest.raises(SpaceMismatchError, match=r"key_kwargs keys \['obs/imag'\]"):
        DictStorage.create(
            space, {"obs/image": MemoryStorage, "*": MemoryStorage}, capacity=2, key_kwargs={"obs/imag": {}}
        )
    storage = DictStorage.create(space, {"obs/image": MemoryStorage, "*": MemoryStorage}, capacity=2)
    routes = storage._routes
    with pytest.raises(
        SpaceMismatchError, match="'\\*' has capacity 2 and length 2, 'obs/image' has capacity 3 and length 3"
    ):
        DictStorage(space, routes, [storage.children["*"], MemoryStorage.create(routes[1].space, capacity=3)])
    with pytest.raises(SpaceMismatchError, match="child 'obs/image' must hold"):
        DictStorage(space, routes, [storage.children["*"], storage.children["*"]])


def test_dict_sidecar_and_custom_separator(backend, tmp_path):
    space = storage_space(backend)
    storage_map = {"obs.image": "memmap", "obs.*": MemmapStorage, "*": "memmap"}
    storage = DictStorage.create(space, storage_map, capacity=3, cache_path=tmp_path / "s", nested_separator=".")
    samples = [storage_sample(backend, i) for i in range(3)]
    storage.set(slice(0, 3), concatenate(space, samples))
    storage.flush()
    sidecar = json.loads((tmp_path / "s" / "dict.json").read_text())
    assert sidecar == {
        "format_version": 1,
        "nested_separator": ".",
        "children": {
            "*": {"name": "memmap", "path": "_default"},
            "obs.*": {"name": "memmap", "path": "obs._default"},
            "obs.image": {"name": "memmap", "path": "obs.image"},
        },
    }
    storage.close()
    loaded = storage_class("dict").load_from(tmp_path / "s", space, capacity=3)
    assert_tree_equal(loaded.get(slice(0, 3)), stack_samples(samples))
    assert_tree_equal(loaded.get_column("obs.state").get(1), samples[1]["obs"]["state"])  # the stored separator
    loaded.close()


# ---------------------------------------------------------------------- TransformedStorage
def test_transformed_stores_the_transformed_values(backend, tmp_path):
    space = storage_space(backend, text=False)
    storage = TransformedStorage.create(
        space, MemmapStorage, data_transformation=image_to_unit(), capacity=3, cache_path=tmp_path / "s"
    )
    samples = [storage_sample(backend, i * 100, text=False) for i in range(3)]
    storage.set(slice(0, 3), concatenate(space, samples))
    stored = to_numpy(storage.inner.get(slice(0, 3))["obs"]["image"])
    assert stored.dtype == np.float32 and stored.max() <= 1.0 and np.isclose(stored[2].max(), 200 / 255)
    index = backend.asarray([2, 0], dtype=backend.default_index_dtype)
    expected = flatten_data(batch_space(space, 1), concatenate(space, [samples[2], samples[0]]), start_dim=1)
    assert np.array_equal(to_numpy(storage.get_flattened(index)), to_numpy(expected))  # the original layout
    sidecar = json.loads((tmp_path / "s" / "transformed.json").read_text())
    assert sidecar["transformation"] == transformation_to_json(image_to_unit())
    assert sidecar["inner"] == {"name": "memmap", "path": "inner_storage"}
    storage.close()


def test_transformed_needs_an_invertible_registered_transformation(backend, tmp_path):
    space = storage_space(backend)
    with pytest.raises(
        UnsupportedOperationError,
        match=r"invertible transformation \(has_inverse=True\), got DictIncludeTransformation",
    ):
        TransformedStorage.create(
            space, MemoryStorage, data_transformation=DictIncludeTransformation(["action"]), capacity=2
        )

    class Unregistered(RescaleTransformation):
        registered_name = None

    transformation = DictTransformation({"action": Unregistered(0.0, 1.0, "float32")})
    with pytest.raises(UnsupportedOperationError, match="not registered"):
        TransformedStorage.create(
            space, MemmapStorage, data_transformation=transformation, capacity=2, cache_path=tmp_path / "s"
        )
    assert not (tmp_path / "s").exists()  # nothing created before the failure


# ---------------------------------------------------------------------- ToBackendOrDeviceStorage
def test_backend_storage_converts(backend, tmp_path):
    space = storage_space(backend)
    storage = ToBackendOrDeviceStorage.create(
        space, MemmapStorage, capacity=3, cache_path=tmp_path / "s", backend=NumpyComputeBackend
    )
    if backend is NumpyComputeBackend:
        assert type(storage) is MemmapStorage  # nothing to convert: the inner storage itself
        return
    samples = [storage_sample(backend, i) for i in range(3)]
    storage.set(slice(0, 3), concatenate(space, samples))
    assert storage.inner.backend is NumpyComputeBackend
    assert isinstance(storage.inner.get(0)["obs"]["image"], np.ndarray)
    index = backend.asarray([2, 1], dtype=backend.default_index_dtype)
    value = storage.get(index)
    assert get_backend(value["obs"]["state"]) is backend and list(value["note"]) == [s["note"] for s in samples[2:0:-1]]
    flat = storage.get_flattened(index)
    assert get_backend(flat) is backend
    sidecar = json.loads((tmp_path / "s" / "backend.json").read_text())
    assert sidecar == {
        "format_version": 1,
        "inner": {"name": "memmap", "path": "inner_storage"},
        "inner_backend": "numpy",
        "inner_device": None,
    }
    storage.close()


def test_backend_storage_records_the_inner_device(tmp_path):
    jax = pytest.importorskip("jax")
    jax_backend = backend_from_name("jax")
    space = storage_space(NumpyComputeBackend)
    storage = ToBackendOrDeviceStorage.create(
        space, MemoryStorage, capacity=2, cache_path=tmp_path / "s", backend=jax_backend, device=jax.devices("cpu")[0]
    )
    storage.set(0, storage_sample(NumpyComputeBackend, 5))
    assert isinstance(storage.get(0)["obs"]["image"], np.ndarray)
    storage.dumps(tmp_path / "s")
    sidecar = json.loads((tmp_path / "s" / "backend.json").read_text())
    assert (sidecar["inner_backend"], sidecar["inner_device"]) == ("jax", "cpu:0")
    loaded = ToBackendOrDeviceStorage.load_from(tmp_path / "s", space, capacity=2)
    assert loaded.inner.backend is jax_backend
    assert_tree_equal(loaded.get(0), storage_sample(NumpyComputeBackend, 5))
    loaded.close()
    storage.close()


# ---------------------------------------------------------------------- sidecars of every composition
def make_each(kind, space, path):
    if kind == "flattened":
        return FlattenedStorage.create(space, MemmapStorage, capacity=None, cache_path=path, initial_rows=2)
    if kind == "dict":
        return DictStorage.create(
            space, {"obs/image": MemmapStorage, "*": MemmapStorage}, capacity=None, cache_path=path, initial_rows=2
        )
    if kind == "transformed":
        return TransformedStorage.create(
            space, MemmapStorage, data_transformation=image_to_unit(), capacity=None, cache_path=path, initial_rows=2
        )
    return ToBackendOrDeviceStorage.create(
        space, MemmapStorage, capacity=None, cache_path=path, backend=NumpyComputeBackend, initial_rows=2
    )


KINDS = ("flattened", "dict", "transformed", "backend")


def outer_backend(kind):
    """NumPy, or PyTorch for the backend composition (whose inner storage is on NumPy)."""
    if kind != "backend":
        return NumpyComputeBackend
    pytest.importorskip("torch")
    return backend_from_name("torch")


@pytest.mark.parametrize("kind", KINDS)
def test_growable_buffer_round_trip(kind, tmp_path):
    outer = outer_backend(kind)
    space = storage_space(outer)
    cls = storage_class(kind)
    buffer = ReplayBuffer.create(
        cls, space, *_positional(kind), cache_path=tmp_path / "rb", capacity=None, **_keywords(kind)
    )
    samples = [storage_sample(outer, i) for i in range(7)]
    buffer.extend(concatenate(space, samples))
    buffer.flush()
    buffer.close()
    loaded = ReplayBuffer.load_from(tmp_path / "rb", backend=outer, read_only=False)
    assert type(loaded.storage) is cls and len(loaded) == 7
    assert_tree_equal(loaded.get_at(slice(None)), stack_samples(samples))
    loaded.append(samples[0])
    assert_tree_equal(loaded.get_at(7), samples[0])
    loaded.close()


def _positional(kind):
    return ({"obs/image": MemmapStorage, "*": MemmapStorage},) if kind == "dict" else (MemmapStorage,)


def _keywords(kind):
    extra: dict[str, dict[str, object]] = {
        "transformed": {"data_transformation": image_to_unit()},
        "backend": {"backend": NumpyComputeBackend},
    }
    return {"initial_rows": 2, **extra.get(kind, {})}


@pytest.mark.parametrize("kind", KINDS)
def test_sidecar_errors(kind, tmp_path):
    backend = outer_backend(kind)
    space = storage_space(backend)
    storage = make_each(kind, space, tmp_path / "s")
    storage.close()
    sidecar_path = tmp_path / "s" / f"{kind}.json"
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["format_version"] == 1
    cls = storage_class(kind)
    child_key = "inner" if kind != "dict" else "children"
    broken = dict(sidecar)
    broken[child_key] = (
        {"name": "memmap", "path": "../elsewhere"}
        if kind != "dict"
        else {"*": {"name": "memmap", "path": "../x"}, "obs/image": sidecar["children"]["obs/image"]}
    )
    sidecar_path.write_text(json.dumps(broken))
    with pytest.raises(UnsafePathError, match="leaves its directory"):
        cls.load_from(tmp_path / "s", space)
    sidecar_path.write_text(json.dumps({**sidecar, "format_version": 99}))
    with pytest.raises(FormatVersionError, match="format_version 99"):
        cls.load_from(tmp_path / "s", space)
    sidecar_path.unlink()
    with pytest.raises(FileNotFoundError, match=f"{kind}.json is missing"):
        cls.load_from(tmp_path / "s", space)
    with pytest.raises(FileExistsError, match="not empty"):
        make_each(kind, space, tmp_path / "s")


def test_dict_children_may_be_compositions(tmp_path):
    space = storage_space(NumpyComputeBackend)
    unit_image = DictTransformation({"image": RescaleTransformation(0.0, 1.0, "float32")})
    key_kwargs = {
        "obs": {"inner_storage_cls": "memmap", "data_transformation": unit_image},
        "*": {"inner_storage_cls": MemmapStorage},
    }
    storage_map = {"obs": TransformedStorage, "*": "flattened"}
    storage = DictStorage.create(space, storage_map, capacity=3, cache_path=tmp_path / "s", key_kwargs=key_kwargs)
    samples = [storage_sample(NumpyComputeBackend, i) for i in range(3)]
    storage.set(slice(0, 3), concatenate(space, samples))
    assert_tree_equal(storage.get_column(["obs", "state"]).get(2), samples[2]["obs"]["state"])  # inside a claimed key
    assert list(storage.get_column(["note"]).get(slice(0, 3))) == [s["note"] for s in samples]
    storage.flush()
    storage.close()
    assert (tmp_path / "s" / "obs" / "transformed.json").is_file()
    assert (tmp_path / "s" / "_default" / "flattened.json").is_file()
    loaded = DictStorage.load_from(tmp_path / "s", space, capacity=3)
    assert_tree_equal(loaded.get(slice(0, 3)), stack_samples(samples))
    loaded.close()


# ---------------------------------------------------------------------- regressions found by these tests
def test_convert_tree_keeps_text_object_arrays():
    pytest.importorskip("torch")
    texts = np.array(["ab", "c"], dtype=object)
    assert convert_tree({"note": texts}, backend_from_name("torch"))["note"] is texts


def test_memory_storage_dumps_twice_to_the_same_path(tmp_path):
    storage = MemoryStorage.create(storage_space(NumpyComputeBackend), capacity=2)
    storage.dumps(tmp_path / "s")
    storage.dumps(tmp_path / "s")
