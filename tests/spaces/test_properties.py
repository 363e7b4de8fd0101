"""Property-based tests of the spaces over random nested spaces, on every backend.

Strategies come from :mod:`unibatch.testing`. Values are compared through NumPy, leaf by leaf.
The bugs these properties found are pinned by explicit regression tests at the end of the file.
Set ``UNIBATCH_PROPERTY_EXAMPLES`` (default 30) for a longer search.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unibatch.backends import ComputeBackend, backend_from_name, convert, convert_tree, get_backend_or_none
from unibatch.errors import SpaceMismatchError
from unibatch.spaces import (
    BatchedSpace,
    BinarySpace,
    BoxSpace,
    DictSpace,
    Space,
    TextSpace,
    TupleSpace,
    batch_size,
    batch_size_data,
    batch_space,
    check_data,
    concatenate,
    flat_dim,
    flat_dtype,
    flatten_data,
    flatten_space,
    iterate,
    json_to_space,
    space_to_json,
    unflatten_data,
)
from unibatch.testing import dict_keys, flattenable_spaces, sample_lists, samples, seeds, spaces

PROPERTY = settings(
    max_examples=int(os.environ.get("UNIBATCH_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    # The backend fixtures are stateless singletons, safe to share between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEWER = settings(PROPERTY, max_examples=max(1, PROPERTY.max_examples * 2 // 3))


# ---------------------------------------------------------------------- helpers
Path = tuple[Any, ...]


def path_text(path: Path) -> str:
    """The key path as unibatch's messages spell it (``a/0/b``; ``value`` for the root)."""
    return "/".join(map(str, path)) or "value"


def is_text(space: Space) -> bool:
    return isinstance(space, TextSpace) or (
        isinstance(space, BatchedSpace) and isinstance(space.single_space, TextSpace)
    )


def leaf_spaces_of(space: Space, path: Path = ()) -> Iterator[tuple[Path, Space]]:
    if isinstance(space, DictSpace):
        for key, sub in space.items():
            yield from leaf_spaces_of(sub, (*path, key))
    elif isinstance(space, TupleSpace):
        for position, sub in enumerate(space.spaces):
            yield from leaf_spaces_of(sub, (*path, position))
    else:
        yield path, space


def containers_of(space: Space, path: Path = ()) -> Iterator[tuple[Path, Space]]:
    if isinstance(space, (DictSpace, TupleSpace)):
        yield path, space
        children = space.items() if isinstance(space, DictSpace) else enumerate(space.spaces)
        for key, sub in children:
            yield from containers_of(sub, (*path, key))


def map_leaves(space: Space, data: Any, fn: Callable[[Path, Space, Any], Any], path: Path = ()) -> Any:
    """``data`` with every leaf replaced by ``fn(path, leaf space, leaf value)``."""
    if isinstance(space, DictSpace):
        assert isinstance(data, Mapping) and set(data) == set(space.keys()), (path, data)
        return {key: map_leaves(sub, data[key], fn, (*path, key)) for key, sub in space.items()}
    if isinstance(space, TupleSpace):
        assert isinstance(data, tuple) and len(data) == len(space.spaces), (path, data)
        return tuple(map_leaves(sub, value, fn, (*path, i)) for i, (sub, value) in enumerate(zip(space.spaces, data)))
    return fn(path, space, data)


def map_space_leaves(space: Space, fn: Callable[[Space], Space]) -> Space:
    if isinstance(space, DictSpace):
        return DictSpace(space.backend, {key: map_space_leaves(sub, fn) for key, sub in space.items()})
    if isinstance(space, TupleSpace):
        return TupleSpace(space.backend, [map_space_leaves(sub, fn) for sub in space.spaces])
    return fn(space)


def replace_at(space: Space, data: Any, path: Path, fn: Callable[[Any], Any]) -> Any:
    """A copy of ``data`` with the node at ``path`` replaced by ``fn(node)``."""
    if not path:
        return fn(data)
    head, rest = path[0], path[1:]
    if isinstance(space, DictSpace):
        return {**data, head: replace_at(space[head], data[head], rest, fn)}
    values = list(data)
    values[head] = replace_at(space.spaces[head], values[head], rest, fn)
    return tuple(values)


def to_np(x: Any) -> np.ndarray:
    backend = get_backend_or_none(x)
    assert backend is not None, f"expected a backend array, got {type(x).__name__}"
    return np.asarray(backend.to_numpy(x))


def dtype_name_of(x: Any) -> str:
    backend = get_backend_or_none(x)
    assert backend is not None, f"expected a backend array, got {type(x).__name__}"
    return backend.dtype_name(x.dtype)


def assert_leaf_equal(
    path: Path, leaf: Space, got: Any, expected: Any, backend: ComputeBackend, scalars_ok: bool = False
) -> None:
    where = path_text(path)
    if is_text(leaf):
        if isinstance(expected, str):
            assert isinstance(got, str) and got == expected, (where, got, expected)
        else:
            assert isinstance(got, np.ndarray) and got.dtype == object, (where, type(got))
            assert got.shape == expected.shape and got.tolist() == expected.tolist(), (where, got, expected)
        return
    if scalars_ok and isinstance(got, np.generic) and backend.simplified_name == "numpy" and expected.shape == ():
        got = np.asarray(got)  # NumPy indexing / comparison of a 0-d array gives a NumPy scalar
    assert backend.is_backendarray(got), (where, type(got).__name__, backend.simplified_name)
    assert tuple(got.shape) == tuple(expected.shape), (where, tuple(got.shape), tuple(expected.shape))
    assert dtype_name_of(got) == dtype_name_of(expected), (where, dtype_name_of(got), dtype_name_of(expected))
    np.testing.assert_array_equal(to_np(got), to_np(expected), err_msg=where, strict=True)


def assert_tree_equal(space: Space, got: Any, expected: Any, scalars_ok: bool = False) -> None:
    """``got`` has the structure of ``space`` and equals ``expected`` leaf by leaf (values, shapes, dtypes).

    ``scalars_ok``: on NumPy a shape-``()`` leaf of ``got`` may be a NumPy scalar (``data[i]``).
    """
    map_leaves(space, expected, lambda *_: None)  # expected has the structure of space
    leaves_got: dict[Path, Any] = {}
    map_leaves(space, got, lambda path, leaf, value: leaves_got.__setitem__(path, value))
    map_leaves(
        space,
        expected,
        lambda path, leaf, value: assert_leaf_equal(path, leaf, leaves_got[path], value, leaf.backend, scalars_ok),
    )


def expected_flat_dtype_name(space: Space) -> str:
    """Decision 3, written out independently of ``unibatch.spaces._dtypes``."""
    names = []
    for _, leaf in leaf_spaces_of(space):
        if isinstance(leaf, BoxSpace):
            names.append(leaf.backend.dtype_name(leaf.dtype))
        elif isinstance(leaf, BinarySpace):
            names.append("bool")
        else:
            names.append("int32")  # text leaves: character indices
    floats = [int(name.removeprefix("float")) for name in names if name.startswith("float")]
    if floats:
        name = f"float{max(32, *floats)}"
    else:
        integers = [name for name in names if name != "bool"]
        name = np.result_type(*integers).name if integers else "uint8"
    return space.backend.dtype_name(space.backend.as_dtype(name))


def sorted_leaves(space: Space, data: Any, path: Path = ()) -> Iterator[tuple[Path, Space, Any]]:
    """``(path, leaf, value)`` in the flat order of decision 2 (dict keys sorted here, not by DictSpace)."""
    if isinstance(space, DictSpace):
        for key in sorted(space.keys()):
            yield from sorted_leaves(space[key], data[key], (*path, key))
    elif isinstance(space, TupleSpace):
        for position, sub in enumerate(space.spaces):
            yield from sorted_leaves(sub, data[position], (*path, position))
    else:
        yield path, space, data


def text_codes(text: TextSpace, strings: Any) -> np.ndarray:
    """Character indices of ``strings`` (a str or an object array), padded with ``len(charset)``."""
    strings = np.asarray(strings, dtype=object)
    charset = text.charset or ""
    rows = [[charset.index(c) for c in s] + [len(charset)] * (text.max_length - len(s)) for s in strings.reshape(-1)]
    return np.array(rows, dtype=np.int64).reshape((*strings.shape, text.max_length))


def expected_flat(space: Space, data: Any, batch_ndim: int = 0) -> np.ndarray:
    """The flat layout written out independently: leaves in sorted-key order, cast one by one."""
    flat = np.dtype(expected_flat_dtype_name(space))
    parts = []
    for _, leaf, value in sorted_leaves(space, data):
        if is_text(leaf):
            part = text_codes(leaf if isinstance(leaf, TextSpace) else leaf.single_space, value)
        else:
            array = to_np(value)
            part = array.reshape((*array.shape[:batch_ndim], math.prod(array.shape[batch_ndim:])))
        parts.append(part.astype(flat))
    return np.concatenate(parts, axis=-1)


def expected_flat_bounds(space: Space) -> tuple[np.ndarray, np.ndarray]:
    """``flatten_space(space)`` bounds written out: every leaf's bounds cast directly to the flat dtype."""
    flat = np.dtype(expected_flat_dtype_name(space))
    lows, highs = [], []
    for _, leaf, _ in sorted_leaves(space, _structure_of(space)):
        if isinstance(leaf, BoxSpace):
            low, high = (np.broadcast_to(b, leaf.shape).reshape(-1) for b in leaf.host_bounds())
        elif isinstance(leaf, BinarySpace):
            low, high = np.zeros(math.prod(leaf.shape), np.uint8), np.ones(math.prod(leaf.shape), np.uint8)
        else:
            low, high = np.zeros(leaf.max_length, np.int64), np.full(leaf.max_length, len(leaf.charset), np.int64)
        with np.errstate(over="ignore"):
            lows.append(low.astype(flat))
            highs.append(high.astype(flat))
    return np.concatenate(lows), np.concatenate(highs)


def _structure_of(space: Space) -> Any:
    if isinstance(space, DictSpace):
        return {key: _structure_of(sub) for key, sub in space.items()}
    if isinstance(space, TupleSpace):
        return tuple(_structure_of(sub) for sub in space.spaces)
    return None


def representable(space: Space, data: Any) -> Any:
    """``data`` with integer elements that the (floating) flat dtype cannot hold exactly set to 0.

    Flattening an ``int64``/``int32`` leaf next to a ``float32`` leaf is lossy by decision 3;
    the round trip is exact only for values the flat dtype represents.
    """
    flat = np.dtype(space.backend.dtype_name(flat_dtype(space)))

    def fix(path: Path, leaf: Space, value: Any) -> Any:
        if not isinstance(leaf, BoxSpace) or flat.kind != "f":
            return value
        array = to_np(value)
        if array.dtype.kind not in "iu":
            return value
        ok = np.array([int(flat.type(v)) == v for v in array.reshape(-1).tolist()], dtype=bool).reshape(array.shape)
        if ok.all():
            return value
        return leaf.backend.from_numpy(np.where(ok, array, 0).astype(array.dtype))

    return map_leaves(space, data, fix)


def other_shapes(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes that differ from ``shape``: one more axis, one axis fewer, or one side changed."""
    options = [st.integers(0, 3).map(lambda side: (*shape, side)), st.integers(0, 3).map(lambda side: (side, *shape))]
    if shape:
        options.append(st.integers(0, len(shape) - 1).map(lambda axis: shape[:axis] + shape[axis + 1 :]))
        options.append(
            st.tuples(st.integers(0, len(shape) - 1), st.integers(0, 3))
            .filter(lambda change: change[1] != shape[change[0]])
            .map(lambda change: shape[: change[0]] + (change[1],) + shape[change[0] + 1 :])
        )
    return st.one_of(options)


def draw_batch(data: st.DataObject, space: Space, min_size: int = 0) -> tuple[list[Any], Any]:
    values = data.draw(sample_lists(space, min_size=min_size, max_size=3), label="values")
    return values, concatenate(space, values)


# ---------------------------------------------------------------------- flattening
@PROPERTY
@given(data=st.data())
def test_flatten_unflatten_round_trip_of_one_sample(backend, data):
    space = data.draw(flattenable_spaces(backend), label="space")
    value = representable(space, data.draw(samples(space), label="value"))

    flat = flatten_data(space, value)

    assert backend.is_backendarray(flat)
    assert tuple(flat.shape) == (flat_dim(space),)
    assert dtype_name_of(flat) == backend.dtype_name(flat_dtype(space)) == expected_flat_dtype_name(space)
    np.testing.assert_array_equal(to_np(flat), expected_flat(space, value), strict=True)
    assert_tree_equal(space, unflatten_data(space, flat), value)


@PROPERTY
@given(data=st.data())
def test_flatten_unflatten_round_trip_of_a_batch(backend, data):
    space = data.draw(flattenable_spaces(backend), label="space")
    values, batch = draw_batch(data, space)
    batch = representable(batch_space(space, len(values)), batch)
    any_size = batch_space(space, 1)  # start_dim=1 ignores the space's own batch axis

    flat = flatten_data(any_size, batch, start_dim=1)

    assert backend.is_backendarray(flat)
    assert flat_dim(any_size, start_dim=1) == flat_dim(space)
    assert tuple(flat.shape) == (len(values), flat_dim(space))
    assert dtype_name_of(flat) == backend.dtype_name(flat_dtype(space))
    np.testing.assert_array_equal(to_np(flat), expected_flat(space, batch, batch_ndim=1), strict=True)
    assert_tree_equal(batch_space(space, len(values)), unflatten_data(any_size, flat, start_dim=1), batch)
    # Row i is the flattening of sample i.
    for row, item in enumerate(iterate(space, batch)):
        np.testing.assert_array_equal(to_np(flat)[row], to_np(flatten_data(space, item)), strict=True)


@FEWER
@given(data=st.data())
def test_flat_dtype_is_the_same_on_every_backend(backend, data):
    numpy_space = data.draw(flattenable_spaces(backend_from_name("numpy")), label="space")
    space = numpy_space.to(backend)
    numpy_name = numpy_space.backend.dtype_name(flat_dtype(numpy_space))

    name = backend.dtype_name(flat_dtype(space))
    # Same name on NumPy and PyTorch; JAX canonicalises 64-bit dtypes to 32-bit.
    assert name == backend.dtype_name(backend.as_dtype(numpy_name))
    if backend.simplified_name != "jax":
        assert name == numpy_name
    value = data.draw(samples(space), label="value")
    assert dtype_name_of(flatten_data(space, value)) == name
    assert backend.dtype_name(flatten_space(space).dtype) == name


@PROPERTY
@given(data=st.data())
def test_flatten_space_contains_flattened_values(backend, data):
    space = data.draw(flattenable_spaces(backend), label="space")
    values, batch = draw_batch(data, space, min_size=1)
    flat_space = flatten_space(space)

    assert flat_space.shape == (flat_dim(space),)
    assert backend.dtype_name(flat_space.dtype) == backend.dtype_name(flat_dtype(space))
    low, high = expected_flat_bounds(space)
    np.testing.assert_array_equal(to_np(flat_space.low), low, strict=True)
    np.testing.assert_array_equal(to_np(flat_space.high), high, strict=True)
    for value in values:
        assert flat_space.contains(flatten_data(space, value))
    batched = batch_space(space, len(values))
    flat_batch_space = flatten_space(batched, start_dim=1)
    assert flat_batch_space.shape == (len(values), flat_dim(space))
    assert flat_batch_space.contains(flatten_data(batched, batch, start_dim=1))


# ---------------------------------------------------------------------- batching
@PROPERTY
@given(data=st.data())
def test_concatenate_then_iterate_gives_the_samples_back(backend, data):
    space = data.draw(spaces(backend), label="space")
    assume(any(leaf_spaces_of(space)))  # by design, a space without leaves has no batch axis
    values, batch = draw_batch(data, space)
    n = len(values)
    batched = batch_space(space, n)

    assert batched.contains(batch)
    assert batch_size(batched) == n
    assert batch_size_data(batch) == n
    assert check_data(space, batch, batch_ndim=1, bounds=True) == (n,)
    for items in (list(iterate(batched, batch)), list(iterate(space, batch))):
        assert len(items) == n
        for item, value in zip(items, values):
            assert space.contains(item)
            assert_tree_equal(space, item, value, scalars_ok=True)  # get_at is data[i]
    # A batch of batches.
    twice = batch_space(batched, 2)
    stacked = concatenate(batched, [batch, batch])
    assert twice.contains(stacked)
    for item in iterate(twice, stacked):
        assert batched.contains(item)
        assert_tree_equal(batched, item, batch)


@PROPERTY
@given(data=st.data())
def test_dict_keys_stay_sorted(backend, data):
    children = data.draw(
        st.dictionaries(dict_keys(), spaces(backend, max_depth=1), min_size=1, max_size=4), label="children"
    )
    order = data.draw(st.permutations(sorted(children)), label="insertion order")
    built = DictSpace(backend, {key: children[key] for key in order})
    grown = DictSpace(backend, {})
    for key in order:
        grown[key] = children[key]

    assert list(built.keys()) == list(grown.keys()) == list(iter(built)) == sorted(children)
    assert built == grown
    assert space_to_json(built) == space_to_json(grown)
    del grown[order[0]]
    assert list(grown.keys()) == sorted(order[1:])


# ---------------------------------------------------------------------- serialization
@PROPERTY
@given(data=st.data(), n=st.integers(0, 3))
def test_json_round_trip(backend, data, n):
    space = data.draw(spaces(backend), label="space")
    for original in (space, batch_space(space, n), batch_space(batch_space(space, n), 2)):
        text = json.dumps(space_to_json(original), allow_nan=False)
        loaded = json_to_space(json.loads(text), backend)
        assert loaded == original
        assert repr(loaded) == repr(original)
        assert json.dumps(space_to_json(loaded), allow_nan=False) == text


# ---------------------------------------------------------------------- sampling
@PROPERTY
@given(data=st.data(), seed=seeds(), n=st.integers(0, 3))
def test_samples_are_contained_and_deterministic(backend, data, seed, n):
    space = data.draw(spaces(backend), label="space")
    for sampled in (space, batch_space(space, n)):
        _, first = sampled.sample(backend.random_number_generator(seed))
        _, again = sampled.sample(backend.random_number_generator(seed))
        assert sampled.contains(first)
        assert first in sampled
        assert_tree_equal(sampled, again, first)


# ---------------------------------------------------------------------- conversion
def _int64_within_int32(space: Space) -> Space:
    """Integer 64-bit boxes with bounds clipped to the int32 range."""
    if not isinstance(space, BoxSpace) or space.backend.dtype_name(space.dtype) != "int64":
        return space
    info = np.iinfo(np.int32)
    low, high = (np.clip(bound, info.min, info.max) for bound in space.host_bounds())
    return BoxSpace(space.backend, low, high, "int64", shape=space.shape)


@FEWER
@given(data=st.data())
def test_convert_tree_between_backends(backend, other_backend, data):
    space = data.draw(spaces(backend), label="space")
    narrowing_ints = other_backend.simplified_name == "jax" and backend.simplified_name != "jax"
    if narrowing_ints and data.draw(st.booleans(), label="int64 bounds within int32"):
        space = map_space_leaves(space, _int64_within_int32)
    value = data.draw(samples(space), label="value")
    int32 = np.iinfo(np.int32)
    out_of_int32 = [
        path
        for path, _, leaf_value in sorted_leaves(space, value)
        if get_backend_or_none(leaf_value) is not None
        and dtype_name_of(leaf_value) == "int64"
        and to_np(leaf_value).size
        and not int32.min <= to_np(leaf_value).min() <= to_np(leaf_value).max() <= int32.max
    ]
    if narrowing_ints and out_of_int32:
        # JAX runs with 32-bit types: int64 values beyond int32 are refused, never wrapped.
        with pytest.raises(SpaceMismatchError, match="int32"):
            convert_tree(value, other_backend)
        return

    converted = convert_tree(value, other_backend)

    def check(path: Path, leaf: Space, original: Any) -> None:
        got = leaves[path]
        if is_text(leaf):
            assert got == original
            return
        assert other_backend.is_backendarray(got), path_text(path)
        target = other_backend.dtype_name(other_backend.as_dtype(dtype_name_of(original)))
        assert dtype_name_of(got) == target, path_text(path)
        assert tuple(got.shape) == tuple(original.shape), path_text(path)
        with np.errstate(over="ignore"):  # float64 beyond the float32 range becomes inf on JAX
            expected = to_np(original).astype(target)
        np.testing.assert_array_equal(to_np(got), expected, err_msg=path_text(path), strict=True)

    leaves: dict[Path, Any] = {}
    map_leaves(space, converted, lambda path, leaf, got: leaves.__setitem__(path, got))
    map_leaves(space, value, check)
    assert space.to(other_backend).contains(converted)
    if other_backend.simplified_name != "jax" or backend.simplified_name == "jax":  # no 64-bit -> 32-bit
        assert space.to(other_backend).to(backend) == space


# ---------------------------------------------------------------------- validation
@PROPERTY
@given(data=st.data())
def test_check_data_accepts_samples(backend, data):
    space = data.draw(spaces(backend), label="space")
    value = data.draw(samples(space), label="value")
    assert check_data(space, value) == ()
    assert check_data(space, value, bounds=True) == ()


@PROPERTY
@given(data=st.data())
def test_check_data_rejects_a_leaf_of_another_shape(backend, data):
    space = data.draw(spaces(backend, kinds=("box", "binary"), allow_empty=False), label="space")
    path, leaf = data.draw(st.sampled_from(list(leaf_spaces_of(space))), label="leaf")
    shape = data.draw(other_shapes(leaf.shape), label="wrong shape")
    value = data.draw(samples(space), label="value")
    wrong = replace_at(space, value, path, lambda _: backend.xp.zeros(shape, dtype=leaf.dtype))

    with pytest.raises(SpaceMismatchError) as error:
        check_data(space, wrong)
    message = str(error.value)
    assert message.startswith(f"{path_text(path)}:"), message
    assert f"got {shape}" in message, message
    assert not space.contains(wrong)


@PROPERTY
@given(data=st.data(), remove=st.booleans(), new_key=st.text("abcXYZ_", min_size=1, max_size=4))
def test_check_data_rejects_a_missing_or_unknown_key(backend, data, remove, new_key):
    children = st.dictionaries(dict_keys(), spaces(backend, max_depth=1), max_size=3)
    space = data.draw(children.map(lambda spaces: DictSpace(backend, spaces)), label="space")
    dicts = [(path, sub) for path, sub in containers_of(space) if isinstance(sub, DictSpace)]
    path, sub = data.draw(st.sampled_from(dicts), label="dict")
    remove = remove and len(sub) > 0
    key = data.draw(st.sampled_from(sorted(sub.keys())), label="key") if remove else new_key
    # `key in space` would test values, not keys; rare: new_key draws from dict_keys() letters.
    assume(remove or key not in sub.keys())  # noqa: SIM118
    value = data.draw(samples(space), label="value")

    def change(node: dict[str, Any]) -> dict[str, Any]:
        changed = dict(node)
        if remove:
            del changed[key]
        else:
            changed[key] = backend.asarray(np.zeros(2))
        return changed

    wrong = replace_at(space, value, path, change)
    with pytest.raises(SpaceMismatchError) as error:
        check_data(space, wrong)
    message = str(error.value)
    assert message.startswith(f"{path_text(path)}:"), message
    assert f"{'missing' if remove else 'unknown'} [{key!r}]" in message, message
    assert not space.contains(wrong)


# ---------------------------------------------------------------------- regressions
# Minimal examples of the bugs the properties above found (each failed before its fix).
def test_iterate_a_dict_whose_first_child_is_empty(backend):
    """batch_size/batch_size_data used to stop at the first child, None for an empty container."""
    space = DictSpace(backend, {"a": DictSpace(backend, {}), "b": BoxSpace(backend, 0, 1, "float32", shape=(2,))})
    rng = backend.random_number_generator(0)
    values = []
    for _ in range(3):
        rng, value = space.sample(rng)
        values.append(value)
    batch = concatenate(space, values)
    assert batch_space(space, 3).contains(batch)
    assert batch_size(batch_space(space, 3)) == 3
    assert batch_size_data(batch) == 3
    assert len(list(iterate(space, batch))) == 3


def test_int64_out_of_int32_range_to_jax_is_refused_not_wrapped(backend):
    """``convert`` used to wrap 2**40 to 0 silently."""
    if backend.simplified_name == "jax":
        pytest.skip("the source must not be JAX")
    jax_backend = backend_from_name("jax")
    source = backend.asarray(np.array([1, 2**40], dtype=np.int64), dtype="int64")
    with pytest.raises(SpaceMismatchError, match="int32"):
        convert(source, jax_backend)
    assert to_np(convert(source[:1], jax_backend)).tolist() == [1]


def test_flatten_a_text_of_max_length_zero(backend):
    """_encode_texts/_decode_texts used to reshape to (-1, 0), which NumPy rejects."""
    space = DictSpace(backend, {"t": TextSpace(backend, 0, charset="ab"), "x": BinarySpace(backend, (1,))})
    value = {"t": "", "x": backend.asarray(np.array([True]))}
    flat = flatten_data(space, value)
    assert tuple(flat.shape) == (flat_dim(space),) == (1,)
    assert unflatten_data(space, flat)["t"] == ""


def test_unflatten_a_scalar_binary_gives_an_array():
    """unflatten_data used to give np.bool_ (from ``piece != 0``) for a shape-() BinarySpace on NumPy."""
    backend = backend_from_name("numpy")
    space = TupleSpace(backend, [BinarySpace(backend, ()), BoxSpace(backend, 0, 1, "float32", shape=())])
    result = unflatten_data(space, np.array([1.0, 0.5], dtype=np.float32))
    assert isinstance(result[1], np.ndarray)
    assert isinstance(result[0], np.ndarray)


@pytest.mark.parametrize("shape", [(0, 1), (1, 0, 1)])
def test_json_round_trip_of_zero_size_bounds(backend, shape):
    """Bounds with a 0-size axis before another axis used to lose that axis in JSON (``tolist()`` is ``[]``)."""
    space = BoxSpace(backend, np.zeros(shape), np.ones(shape), "float32", shape=shape)
    assert json_to_space(json.loads(json.dumps(space_to_json(space), allow_nan=False)), backend) == space


def test_flatten_space_contains_a_flattened_int64_next_to_a_float32(backend):
    """flatten_space used to cast int64 bounds to float32 through float64 (double rounding)."""
    if backend.simplified_name == "jax":
        pytest.skip("JAX has no int64")
    high = 2**62 + 2**38 + 1  # float64 rounds it to a float32 midpoint, which then rounds to even (down)
    space = DictSpace(
        backend,
        {
            "a": BoxSpace(backend, high, high, "int64", shape=(1,)),
            "b": BoxSpace(backend, 0.0, 1.0, "float32", shape=(1,)),
        },
    )
    value = space.sample(backend.random_number_generator(0))[1]
    assert space.contains(value)
    assert flatten_space(space).contains(flatten_data(space, value))


def test_float64_subnormal_for_float32_survives_torch_to_jax():
    """PyTorch float64 -> JAX used to go through XLA's conversion, which flushes subnormals to 0."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    source = torch.tensor([1.0e-40, 3.0], dtype=torch.float64)
    expected = source.numpy().astype(np.float32)
    np.testing.assert_array_equal(to_np(convert(source, backend_from_name("jax"))), expected)


def test_numpy_float64_beyond_float32_to_jax_does_not_warn():
    """NumPy -> JAX of float64 beyond float32 used to warn 'overflow encountered in cast'."""
    pytest.importorskip("jax")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = convert(np.array([1.0e300, -1.0e300, 1.0]), backend_from_name("jax"))
    assert to_np(result).tolist() == [np.inf, -np.inf, 1.0]
