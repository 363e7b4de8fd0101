"""The Arrow side of :class:`~unibatch.storages.parquet.ParquetStorage`: columns, part files, foreign schemas.

One column per leaf. Scalars are primitive columns, booleans ``bool``, texts ``string``;
multi-dimensional numbers are ``arrow.fixed_shape_tensor`` columns and multi-dimensional
booleans nested ``fixed_size_list<bool>`` (Arrow tensors hold fixed-width numbers only).
Reading also accepts what other writers use (LeRobot, Hugging Face datasets, pandas):
``list``/``fixed_size_list`` columns whose rows all have one shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.backends import ComputeBackend
from unibatch.errors import SpaceMismatchError, UnsupportedSpaceError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace, Space, TextSpace, TupleSpace
from unibatch.storages._leaves import Leaf
from unibatch.storages._parquet_layout import fsync_file

pa = require("pyarrow", "parquet")
pq = require("pyarrow.parquet", "parquet")
pc = require("pyarrow.compute", "parquet")

Codec = str | None


# ---------------------------------------------------------------------- columns of a space
def column_names(space: Space, separator: str) -> list[str]:
    """One column name per leaf in flat order: the key path joined by ``separator``; ``"data"`` for a bare leaf.

    Raises:
        UnsupportedSpaceError: two leaves get the same name (``{"a.b": ..., "a": {"b": ...}}`` with ``"."``).
    """
    names = [separator.join(path) if path else "data" for path in _key_paths(space, ())]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnsupportedSpaceError(f"leaves share the Parquet column names {repeated} with separator {separator!r}")
    return names


def _key_paths(space: Space, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(space, DictSpace):
        for key, sub in space.items():
            yield from _key_paths(sub, (*prefix, key))
    elif isinstance(space, TupleSpace):
        for position, sub in enumerate(space.spaces):
            yield from _key_paths(sub, (*prefix, str(position)))
    else:
        yield prefix


def arrow_type(leaf: Leaf, column: str) -> Any:
    """The Arrow type of a leaf's column (see the module docstring).

    Raises:
        UnsupportedSpaceError: the leaf has no elements or a dtype Arrow lacks; names the column.
    """
    if leaf.is_text:
        return pa.string()
    if 0 in leaf.shape:
        raise UnsupportedSpaceError(f"column {column!r}: Parquet stores non-empty leaves, got shape {leaf.shape}")
    try:
        value = pa.from_numpy_dtype(leaf.numpy_dtype)
    except (pa.ArrowNotImplementedError, NotImplementedError, TypeError) as error:
        raise UnsupportedSpaceError(
            f"column {column!r}: Parquet stores bool, integer and floating dtypes, got {leaf.numpy_dtype}"
        ) from error
    if not leaf.shape:
        return value
    if leaf.numpy_dtype == np.bool_:
        for size in reversed(leaf.shape):
            value = pa.list_(value, size)
        return value
    return pa.fixed_shape_tensor(value, leaf.shape)


def to_arrow(array: np.ndarray, type_: Any) -> Any:
    """``array`` of shape ``(rows, *leaf_shape)`` as an Arrow array of ``type_`` (zero-copy for numbers)."""
    if pa.types.is_string(type_):
        return pa.array(array, type=type_)
    return _nest(pa.array(np.ascontiguousarray(array).reshape(-1)), type_)


def _nest(values: Any, type_: Any) -> Any:
    if isinstance(type_, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(type_, _nest(values, type_.storage_type))
    if pa.types.is_fixed_size_list(type_):
        return pa.FixedSizeListArray.from_arrays(_nest(values, type_.value_type), type=type_)
    return values


def to_numpy(array: Any, leaf: Leaf, column: str) -> np.ndarray:
    """An Arrow column as ``(rows, *leaf.shape)`` NumPy, without copying numbers where Arrow allows.

    Raises:
        SpaceMismatchError: the column has nulls, or rows of another shape than the leaf's.
    """
    rows = len(array)
    if not rows:
        return np.zeros((0, *leaf.shape), leaf.numpy_dtype)
    shape, values = row_shape(array, column)
    if shape != leaf.shape:
        raise SpaceMismatchError(f"column {column!r}: stored rows have shape {shape}, expected {leaf.shape}")
    flat = values.to_numpy(zero_copy_only=False)
    result = flat.reshape((rows, *leaf.shape))
    return result if result.dtype == leaf.numpy_dtype else result.astype(leaf.numpy_dtype)


def row_shape(array: Any, column: str) -> tuple[tuple[int, ...], Any]:
    """The shape of every row of a non-empty column and its flat values.

    Raises:
        SpaceMismatchError: nulls, rows of different lengths, or a permuted tensor layout.
    """
    values, shape = array, []
    if isinstance(values.type, pa.FixedShapeTensorType):
        if list(values.type.permutation or range(len(values.type.shape))) != list(range(len(values.type.shape))):
            raise SpaceMismatchError(f"column {column!r}: permuted tensor layouts are not supported")
        shape, values = list(values.type.shape), values.storage.flatten()
    while _is_list(values.type):
        _check_no_nulls(values, column)
        shape.append(_list_length(values, column))
        values = values.flatten()
    _check_no_nulls(values, column)
    return tuple(shape), values


def _list_length(values: Any, column: str) -> int:
    """The length of every list in a list array (fixed by the type, or checked to be the same)."""
    if pa.types.is_fixed_size_list(values.type):
        return int(values.type.list_size)
    lengths = pc.min_max(pc.list_value_length(values))
    low, high = lengths["min"].as_py(), lengths["max"].as_py()
    if low != high:
        raise SpaceMismatchError(f"column {column!r}: rows hold lists of {low} to {high} items, not one shape")
    return int(low)


def _is_list(type_: Any) -> bool:
    return bool(pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_))


def _check_no_nulls(values: Any, column: str) -> None:
    if values.null_count:
        raise SpaceMismatchError(f"column {column!r} holds {values.null_count} nulls; unibatch leaves have no nulls")


# ---------------------------------------------------------------------- part files
def parse_compression(
    compression: Codec | dict[str, Codec], columns: Sequence[str], default: Codec
) -> dict[str, Codec]:
    """One codec (or None) per column from a codec name, None, or ``{column: codec}`` (others get ``default``).

    Raises:
        ValueError: an unknown column or a codec this pyarrow lacks.
    """
    chosen = dict(compression) if isinstance(compression, dict) else dict.fromkeys(columns, compression)
    unknown = sorted(set(chosen) - set(columns))
    if unknown:
        raise ValueError(f"compression names unknown columns {unknown}; the columns are {list(columns)}")
    codecs: dict[str, Codec] = {}
    for column in columns:
        codec = chosen.get(column, default)
        codec = None if codec is None or str(codec).lower() in ("none", "uncompressed") else str(codec).lower()
        if codec is not None and not _codec_available(codec):
            raise ValueError(f"compression {codec!r} of column {column!r} is not available in this pyarrow")
        codecs[column] = codec
    return codecs


def _codec_available(codec: str) -> bool:
    try:
        return bool(pa.Codec.is_available(codec))
    except ValueError:  # a name pyarrow does not know at all
        return False


def write_part(
    path: Path, columns: Sequence[str], types: Sequence[Any], arrays: Sequence[np.ndarray], codecs: dict[str, Codec]
) -> None:
    """Write one part file (one row group) and fsync it; ``arrays[i]`` is ``(rows, *shape)`` of ``columns[i]``.

    Encodings: floats plain, byte-stream-split when compressed (both smaller and faster than
    dictionaries for measured values); integers, booleans and texts dictionary-encoded (Parquet
    stores ``uint8`` as 32-bit integers, which a dictionary brings back to 8 bits).
    """
    table = pa.Table.from_arrays([to_arrow(a, t) for a, t in zip(arrays, types, strict=True)], names=list(columns))
    paths = {c: _physical_path(c, t) for c, t in zip(columns, types, strict=True)}
    elements = {c: _element_type(t) for c, t in zip(columns, types, strict=True)}
    floats = [c for c in columns if pa.types.is_floating(elements[c])]
    pq.write_table(
        table,
        path,
        compression={paths[c]: codecs[c] or "none" for c in columns},
        use_dictionary=[paths[c] for c in columns if c not in floats],
        use_byte_stream_split=[paths[c] for c in floats if codecs[c] and not pa.types.is_float16(elements[c])],
        row_group_size=max(table.num_rows, 1),
    )
    fsync_file(path)


def _physical_path(column: str, type_: Any) -> str:
    """The Parquet leaf column path of a top-level column (lists nest as ``<name>.list.element``)."""
    if isinstance(type_, pa.BaseExtensionType):
        type_ = type_.storage_type
    path = column
    while pa.types.is_fixed_size_list(type_):
        path, type_ = f"{path}.list.element", type_.value_type
    return path


def read_part(path: Path, columns: Sequence[str], leaves: Sequence[Leaf], rows: int) -> list[np.ndarray]:
    """The given columns of one part file (memory-mapped) as NumPy, checking it holds ``rows`` rows.

    Raises:
        FileNotFoundError: the file is missing.
        SpaceMismatchError: the file is unreadable, lacks a column, or holds another number of rows.
    """
    try:
        table = pq.read_table(path, columns=list(columns), memory_map=True)
    except pa.ArrowInvalid as error:
        raise SpaceMismatchError(f"cannot read columns {list(columns)} of {path}: {error}") from error
    if table.num_rows != rows:
        raise SpaceMismatchError(f"{path} holds {table.num_rows} rows, its storage expects {rows}")
    return [to_numpy(_one_chunk(table.column(c)), leaf, c) for c, leaf in zip(columns, leaves, strict=True)]


def _one_chunk(column: Any) -> Any:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def count_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer."""
    return int(pq.ParquetFile(path, memory_map=True).metadata.num_rows)


# ---------------------------------------------------------------------- spaces of foreign files
def infer_space(
    files: Sequence[Path], backend: ComputeBackend, device: Any, columns: Sequence[str] | None
) -> DictSpace:
    """A flat ``DictSpace`` keyed by column name for Parquet files written by any tool.

    Numbers are unbounded ``BoxSpace`` s, booleans ``BinarySpace`` s (lists and tensors give
    their shape), strings a ``TextSpace`` as long as the longest one found. Shapes of
    variable-length lists and lengths of strings are read from the data; the rest from the schemas.

    Raises:
        UnsupportedSpaceError: a column has a type without a space (pass ``columns`` to skip it).
        SpaceMismatchError: files disagree on a column, or a list column has rows of several shapes.
    """
    names = list(pq.read_schema(files[0]).names) if columns is None else list(columns)
    elements: dict[str, Any] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    lengths: dict[str, int] = {}
    for path in files:
        schema = pq.read_schema(path)
        scanned = []
        for name in names:
            type_ = _field_type(schema, name, path)
            if elements.setdefault(name, _element_type(type_)) != _element_type(type_):
                raise SpaceMismatchError(f"column {name!r} holds {elements[name]} in {files[0]} but {type_} in {path}")
            if _needs_scan(type_):
                scanned.append(name)
            else:
                _agree(shapes, name, _static_shape(type_), path)
        if scanned:
            _scan(path, scanned, shapes, lengths)
    return DictSpace(
        backend, {name: _space(name, elements[name], shapes, lengths, backend, device) for name in names}, device=device
    )


def _field_type(schema: Any, name: str, path: Path) -> Any:
    if name not in schema.names:
        raise SpaceMismatchError(f"{path} has no column {name!r}; its columns are {schema.names}")
    return schema.field(name).type


def _element_type(type_: Any) -> Any:
    """The type of the numbers (or strings) inside lists and tensors."""
    if isinstance(type_, pa.FixedShapeTensorType):
        return type_.value_type
    while _is_list(type_):
        type_ = type_.value_type
    return pa.string() if pa.types.is_large_string(type_) else type_


def _needs_scan(type_: Any) -> bool:
    """Whether the data must be read: strings (their longest length) and variable-length lists (their shape)."""
    while pa.types.is_fixed_size_list(type_):
        type_ = type_.value_type
    return bool(_is_list(type_) or pa.types.is_string(type_) or pa.types.is_large_string(type_))


def _static_shape(type_: Any) -> tuple[int, ...]:
    """The row shape a type fixes: tensor shapes and nested fixed-size list lengths."""
    if isinstance(type_, pa.FixedShapeTensorType):
        return tuple(type_.shape)
    shape = []
    while pa.types.is_fixed_size_list(type_):
        shape.append(int(type_.list_size))
        type_ = type_.value_type
    return tuple(shape)


def _agree(shapes: dict[str, tuple[int, ...]], name: str, shape: tuple[int, ...], path: Path) -> None:
    if shapes.setdefault(name, shape) != shape:
        raise SpaceMismatchError(f"column {name!r}: rows of shape {shapes[name]} elsewhere, {shape} in {path}")


def _scan(path: Path, names: list[str], shapes: dict[str, tuple[int, ...]], lengths: dict[str, int]) -> None:
    """Row shapes of the list columns and the longest string of the string columns of one file."""
    table = pq.read_table(path, columns=names, memory_map=True)
    for name in names:
        column = _one_chunk(table.column(name))
        if not len(column):
            continue
        if _is_list(column.type):
            _agree(shapes, name, row_shape(column, name)[0], path)
        else:
            _check_no_nulls(column, name)
            lengths[name] = max(lengths.get(name, 0), pc.max(pc.utf8_length(column)).as_py())


def _space(
    name: str,
    element: Any,
    shapes: dict[str, tuple[int, ...]],
    lengths: dict[str, int],
    backend: ComputeBackend,
    device: Any,
) -> Space:
    if pa.types.is_string(element):
        return TextSpace(backend, lengths.get(name, 0), device=device)
    shape = shapes.get(name, ())
    if pa.types.is_boolean(element):
        return BinarySpace(backend, shape, device=device)
    if pa.types.is_integer(element) or pa.types.is_floating(element):
        return BoxSpace(backend, -np.inf, np.inf, element.to_pandas_dtype(), device=device, shape=shape)
    raise UnsupportedSpaceError(
        f"column {name!r} has Arrow type {element}, which has no space (numbers, booleans, strings and fixed-shape "
        "lists of them are supported); pass columns=[...] to leave it out"
    )
