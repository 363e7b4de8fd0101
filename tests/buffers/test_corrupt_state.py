"""Corrupt persisted state: every field of every sidecar edited to bad values (issue 16 §2, "Tests that stay").

Each case copies a buffer, replaces one field of one sidecar (``metadata.json``, ``memmap.json``,
``video.json``, ``parquet.json``, ``image.json``, ``dict.json``, the HDF5 and Zarr attributes, a
trajectory buffer's metadata) by a bad value (missing, null, a string, negative, huge, a float, a
bool, an object), reopens it and reads every row. Allowed outcomes: a typed error (a
``UnibatchError``), or rows that are all rows the writer wrote (never zeros, never a torn row).
Never an untyped exception, never a hang. Path fields are another test's (path escapes).

Also the truncations: a data file shorter than its rows, a growable buffer counting more rows than
stored, and format versions below 1.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.buffers._kill_zygote import CONFIGS, EPISODE_STEPS, NP

from unibatch.buffers import ReplayBuffer
from unibatch.errors import CorruptDataError, FormatVersionError, UnibatchError

BAD_VALUES: list[tuple[str, Any]] = [
    ("missing", KeyError),
    ("null", None),
    ("string", "x"),
    ("negative", -1),
    ("huge", 2**40),
    ("float", 1.5),
    ("bool", True),
    ("object", {}),
]
PATH_FIELDS = {"path", "storage_paths", "file"}
"""Path fields (and segment file names) are covered by the path-escape tests."""
KINDS = ["memmap", "hdf5", "zarr", "parquet", "video", "image", "dict-memmap-video", "trajectory-dict"]
FIRST = 1000
WRITTEN = list(range(FIRST, FIRST + 10))
TIMEOUT = 20


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[tuple[str, int | None], Path]:
    """One buffer per kind and capacity (a wrapped ring of 8, a growable one), 10 rows from row 1000."""
    root = tmp_path_factory.mktemp("originals")
    made = {}
    for kind in KINDS:
        config = CONFIGS[kind]
        for capacity in (8, None):
            path = root / f"{kind}-{capacity}"
            buffer = config.create(path, config.space(), capacity)
            if config.trajectory:  # episodes end as in the kill writer (after rows with s % 7 == 6)
                for s in WRITTEN:
                    buffer.append(config.row(s))
                    if s % EPISODE_STEPS == EPISODE_STEPS - 1:
                        buffer.mark_episode_end()
            else:
                buffer.extend(config.rows(WRITTEN))
            buffer.flush()
            buffer.close()
            made[(kind, capacity)] = path
    return made


# ---------------------------------------------------------------------------------------------- documents


class Document:
    """One persisted JSON document of a buffer directory: a sidecar file, or a JSON attribute."""

    def __init__(self, relative: str, read: Callable[[Path], Any], write: Callable[[Path, Any], None]) -> None:
        self.relative, self.read, self.write = relative, read, write


def json_file(relative: str) -> Document:
    return Document(relative, lambda p: json.loads(p.read_text()), lambda p, d: p.write_text(json.dumps(d)))


def zarr_attribute(relative: str) -> Document:
    def read(path: Path) -> Any:
        return json.loads(path.read_text())["attributes"]["unibatch"]

    def write(path: Path, document: Any) -> None:
        whole = json.loads(path.read_text())
        whole["attributes"]["unibatch"] = document
        path.write_text(json.dumps(whole))

    return Document(relative, read, write)


def hdf5_attribute(relative: str) -> Document:
    import h5py

    def read(path: Path) -> Any:
        with h5py.File(path, "r") as file:
            return json.loads(file.attrs["unibatch"])

    def write(path: Path, document: Any) -> None:
        with h5py.File(path, "r+") as file:
            file.attrs["unibatch"] = json.dumps(document)

    return Document(relative, read, write)


def documents(directory: Path) -> list[Document]:
    found = []
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        if path.name == "zarr.json" and "unibatch" in json.loads(path.read_text()).get("attributes", {}):
            found.append(zarr_attribute(relative))
        elif path.suffix == ".json" and path.name != "zarr.json":
            found.append(json_file(relative))
        elif path.suffix == ".hdf5":
            found.append(hdf5_attribute(relative))
    return found


def field_paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a document (keys and list positions), except path fields and the space's insides."""
    items = document.items() if isinstance(document, dict) else enumerate(document)
    for key, value in items:
        if key in PATH_FIELDS or (isinstance(value, str) and "." in value and "/" not in value and key != "dtype"):
            continue  # a path, or a file name inside a segment or part entry
        yield (*prefix, key)
        if key != "single_instance_space" and isinstance(value, (dict, list)):
            yield from field_paths(value, (*prefix, key))


def edited(document: Any, field: tuple[Any, ...], value: Any) -> Any:
    result = copy.deepcopy(document)
    parent = result
    for key in field[:-1]:
        parent = parent[key]
    if value is KeyError:
        del parent[field[-1]]
    else:
        parent[field[-1]] = value
    return result


# ---------------------------------------------------------------------------------------------- outcomes


def outcome(kind: str, path: Path) -> str:
    """``"typed"`` (a UnibatchError), ``"missing file"`` (FileNotFoundError naming it), ``"rows"`` (correct
    rows), or an AssertionError for anything else."""
    config = CONFIGS[kind]
    try:
        with time_limit(TIMEOUT), config.load(path, read_only=True) as buffer:
            seqs = config.read_all(buffer)  # raises AssertionError on a torn, foreign or zero row
    except UnibatchError:
        return "typed"
    except FileNotFoundError:  # the sidecar names a file that is not there (DESIGN §5: a missing file)
        return "missing file"
    assert set(seqs) <= set(WRITTEN), f"rows {seqs} were never written"
    assert seqs == sorted(seqs), f"rows {seqs} out of order"
    return "rows"


NOT_YET_CHECKED = {"parquet.json", "video.json", "image.json"}
"""Sidecars whose part/segment tables and options are not checked on load yet (issue 16 §2, open):
an edited segment or part range can still serve another row's data. Their cases run in an xfail test."""


def corrupt_every_field(
    originals: dict[tuple[str, int | None], Path], tmp_path: Path, values_per_field: int, open_sidecars: bool = False
) -> None:
    """Edit every field of every document to ``values_per_field`` bad values (rotating through BAD_VALUES)."""
    counts = {"typed": 0, "missing file": 0, "rows": 0}
    failures = []
    turn = 0
    for (kind, capacity), original in originals.items():
        for document in documents(original):
            if (Path(document.relative).name in NOT_YET_CHECKED) != open_sidecars:
                continue
            content = document.read(original / document.relative)
            for field in field_paths(content):
                turn += 1
                chosen = [BAD_VALUES[(turn + k) % len(BAD_VALUES)] for k in range(values_per_field)]
                for label, value in chosen:
                    case = tmp_path / "case"
                    shutil.rmtree(case, ignore_errors=True)
                    shutil.copytree(original, case)
                    document.write(case / document.relative, edited(content, field, value))
                    try:
                        counts[outcome(kind, case)] += 1
                    except Exception as error:  # noqa: BLE001 - every untyped outcome is collected
                        failures.append(f"{kind}/{capacity} {document.relative} {field} {label}: {error!r}"[:300])
    print(f"corrupt cases: {counts}, {len(failures)} failures")
    assert not failures, f"{len(failures)} cases neither raised a typed error nor read correct rows:\n" + "\n".join(
        failures[:40]
    )


def test_every_field_of_every_sidecar(originals, tmp_path):
    """Every field, two bad values each (rotating), within ``make test``."""
    corrupt_every_field(originals, tmp_path, values_per_field=2)


@pytest.mark.soak
def test_every_field_of_every_sidecar_every_bad_value(originals, tmp_path):
    corrupt_every_field(originals, tmp_path, values_per_field=len(BAD_VALUES))


@pytest.mark.soak
@pytest.mark.xfail(strict=True, reason="video/parquet/image sidecar tables are not validated on load yet")
def test_every_field_of_the_sidecars_not_yet_checked(originals, tmp_path):
    corrupt_every_field(originals, tmp_path, values_per_field=len(BAD_VALUES), open_sidecars=True)


# ---------------------------------------------------------------------------------------------- truncations


def memmap_buffer(tmp_path: Path, capacity: int | None) -> tuple[Path, Path]:
    config = CONFIGS["memmap"]
    path = tmp_path / "rb"
    with config.create(path, config.space(), capacity) as buffer:
        buffer.extend(config.rows(WRITTEN))
        buffer.flush()
    data = max((path / "storage").glob("*.bin"), key=lambda p: p.stat().st_size)
    return path, data


@pytest.mark.parametrize("read_only", [True, False])
@pytest.mark.parametrize("capacity", [16, None])
def test_truncated_memmap_file_is_refused_not_padded(tmp_path, capacity, read_only):
    path, data = memmap_buffer(tmp_path, capacity)
    size = data.stat().st_size
    os.truncate(data, size // 2)
    with pytest.raises(
        CorruptDataError, match=rf"{data.name} is truncated: .* need {size} bytes, the file has {size // 2}"
    ):
        ReplayBuffer.load_from(path, backend=NP, read_only=read_only)
    assert data.stat().st_size == size // 2  # nothing padded


@pytest.mark.parametrize("read_only", [True, False])
def test_growable_count_beyond_stored_rows_is_refused(tmp_path, read_only):
    path, data = memmap_buffer(tmp_path, None)
    metadata = json.loads((path / "metadata.json").read_text())
    metadata["count"] = 10_000
    (path / "metadata.json").write_text(json.dumps(metadata))
    size = data.stat().st_size
    with pytest.raises(CorruptDataError, match="counts 10000 rows, but its storage holds only 10"):
        ReplayBuffer.load_from(path, backend=NP, read_only=read_only)
    assert data.stat().st_size == size  # not grown


@pytest.mark.parametrize(("count", "offset"), [(17, 0), (1.5, 0), (True, 0), (16, 16), (16, -1), (4, 2.0)])
def test_impossible_ring_state_is_refused(tmp_path, count, offset):
    path, _ = memmap_buffer(tmp_path, 16)
    metadata = json.loads((path / "metadata.json").read_text())
    metadata.update(count=count, offset=offset)
    (path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(CorruptDataError):
        ReplayBuffer.load_from(path, backend=NP)


@pytest.mark.parametrize("version", [0, -1])
@pytest.mark.parametrize("sidecar", ["metadata.json", "storage/memmap.json"])
def test_format_version_below_one_is_refused(tmp_path, sidecar, version):
    path, _ = memmap_buffer(tmp_path, 16)
    document = json.loads((path / sidecar).read_text())
    document["format_version"] = version
    (path / sidecar).write_text(json.dumps(document))
    with pytest.raises(FormatVersionError, match=f"format_version {version}"):
        ReplayBuffer.load_from(path, backend=NP)


def test_truncated_hdf5_file_is_refused_and_verify_reports_it(tmp_path):
    config = CONFIGS["hdf5"]
    path = tmp_path / "rb"
    with config.create(path, config.space(), 64) as buffer:
        buffer.extend(config.rows(list(range(FIRST, FIRST + 64))))
        buffer.flush()
    data = path / "storage.hdf5"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(CorruptDataError, match="storage.hdf5 is truncated"):
        ReplayBuffer.load_from(path, backend=NP)
    assert verify_status(path) == 1


def test_deleted_zarr_chunk_is_reported_by_verify(tmp_path):
    config = CONFIGS["zarr"]
    path = tmp_path / "rb"
    with config.create(path, config.space(), 64) as buffer:
        buffer.extend(config.rows(list(range(FIRST, FIRST + 64))))
        buffer.flush()
    assert verify_status(path) == 0
    (path / "storage" / "x" / "c" / "0" / "0").unlink()
    assert verify_status(path) == 1


def verify_status(path: Path) -> int:
    import argparse

    from unibatch.cli import verify

    with contextlib.redirect_stdout(None):
        return verify.run(argparse.Namespace(path=path, chunk=16))
