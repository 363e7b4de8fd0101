"""``ImageStorage``: camera frames as one PNG or JPEG file per slot, encoded and decoded by Pillow.

Layout of the storage directory::

    image.json              {"format_version", "capacity", "length", "shard_size", "num_threads",
                             "leaf": {"dtype", "shape"},
                             "image": {"format", "layout", "quality", "compress_level", "subsampling"}}
    00000/000000000.png     slot 0: slot i lives in shard directory i // 10000 (five digits),
    00000/000000001.png     named by i on nine digits (".jpg" for JPEG)
    00001/000010000.png     ...
    tmp/                    files being written, renamed into their shard once complete

A slot without a file (never written) reads as zeros. Every file is written under ``tmp/`` and
renamed into place, so a reader sees the old image or the new one, never a torn one; a batch is
encoded completely before the first rename, so a failed write changes nothing. Files are never
modified in place, which also makes ``dumps`` to another directory a set of hard links.

PNG is lossless (bit-exact, also 16-bit grayscale). JPEG at the defaults (quality 90, 4:4:4
chroma) on a synthetic 84x84 camera stream (smooth gradients, moving shapes, noise of 2 levels) is
off by 2.5 levels on average and by at most 56 at sharp colour edges (224x224: 2.0 and 53);
4:2:0 chroma, Pillow's usual default, gives 3.8 and 141. Files per 1,000 frames of that stream
(raw 21.2 MB at 84x84x3, 150.5 MB at 224x224x3): PNG level 1 12.2 / 83.2 MB, level 6 10.3 / 70.3 MB
but 2x / 4x slower to encode, JPEG 3.2 / 10.8 MB. Small files fill whole 4 KiB blocks: on disk,
84x84 PNG takes 12.3 MB at either level and JPEG 4.1 MB.

Reads of several slots decode the distinct files in a thread pool (Pillow releases the GIL while
it decodes), then gather them in request order; batched writes encode in the same pool. The pool
is created lazily per process and shut down by :meth:`ImageStorage.close`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import suppress
from pathlib import Path
from typing import Any, cast

import numpy as np
from typing_extensions import Self

from unibatch.backends import get_backend_or_none
from unibatch.errors import FormatVersionError, SpaceMismatchError, UnsupportedOperationError
from unibatch.spaces import Space
from unibatch.storages._atomic import atomic_write_json, fsync_directory, read_sidecar
from unibatch.storages._base import PathLike, SpaceStorage, StorageIndex
from unibatch.storages._directories import new_directory, parse_capacity, removes_on_failure
from unibatch.storages._image_codec import CorruptImageError, ImageCodec, make_codec
from unibatch.storages._leaves import host_index, leaf_table
from unibatch.storages._registry import register_storage
from unibatch.storages._safe_paths import create_temporary, refuse_symlink

__all__ = ["CorruptImageError", "ImageStorage"]

SIDECAR = "image.json"
FORMAT_VERSION = 1
SHARD_SIZE = 10_000
TEMPORARY_DIRECTORY = "tmp"
MAX_DEFAULT_THREADS = 8
IMAGE_OPTIONS = {"format", "layout", "quality", "compress_level", "subsampling"}


@register_storage("image")
class ImageStorage(SpaceStorage):
    """Image frames of one ``BoxSpace`` leaf, one file per slot, fixed or growable capacity.

    Use :meth:`create` and :meth:`load_from`; the constructor opens an existing directory.

    >>> import tempfile
    >>> import numpy as np
    >>> from unibatch import BoxSpace, NumpyComputeBackend as np_backend
    >>> directory = tempfile.TemporaryDirectory()
    >>> space = BoxSpace(np_backend, 0, 255, "uint8", shape=(3, 84, 84))
    >>> storage = ImageStorage.create(space, capacity=None, cache_path=f"{directory.name}/frames")
    >>> storage.extend_length(2)
    >>> storage.set(slice(0, 2), np.full((2, 3, 84, 84), 7, np.uint8))
    >>> storage.flush()
    >>> storage.get(np.array([1, 1, 0])).shape
    (3, 3, 84, 84)
    >>> storage.close()
    >>> directory.cleanup()
    """

    is_multiprocessing_safe = True
    has_expensive_reads = True
    is_persistent = True
    cache_filename: Path

    def __init__(self, single_instance_space: Space, path: PathLike, *, read_only: bool = True) -> None:
        super().__init__(single_instance_space)
        self.cache_filename = Path(path)
        self.is_mutable = not read_only
        sidecar = _read_sidecar(self.cache_filename)
        self._codec = _codec_for(single_instance_space, sidecar, self.cache_filename)
        self.capacity = sidecar["capacity"]
        self._length = int(sidecar["length"])
        self._recorded_length = self._length  # what image.json on disk says
        self._shard_size = int(sidecar["shard_size"])
        self._num_threads_option: int | None = sidecar["num_threads"]
        self._num_threads = self._num_threads_option or min(MAX_DEFAULT_THREADS, os.cpu_count() or 1)
        self._stale_stop = self._length  # files may remain at slots [length, stale_stop) after a shrink
        self._pending: set[int] = set()  # slots renamed into place since the last flush
        self._known_shards: set[int] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid: int | None = None
        _refuse_linked_directories(self.cache_filename)

    # ------------------------------------------------------------------ construction
    @classmethod
    @removes_on_failure
    def create(
        cls,
        single_instance_space: Space,
        *args: Any,
        capacity: int | None,
        cache_path: PathLike | None = None,
        multiprocessing: bool = False,
        format: str = "png",
        quality: int = 90,
        compress_level: int = 1,
        subsampling: str = "4:4:4",
        layout: str | None = None,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create the directory ``cache_path`` for image frames of ``single_instance_space``.

        Args:
            single_instance_space: a ``BoxSpace`` of uint8 ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``
                with C in 1, 3, 4 (4: PNG only), or uint16 ``(H, W)``/``(H, W, 1)`` (PNG only).
            capacity: number of slots, or None for a growable storage.
            cache_path: the directory to create (must not exist or be empty).
            multiprocessing: accepted for API compatibility; the files are always shareable.
            format: ``"png"`` (lossless) or ``"jpeg"`` (lossy, small files, fast to encode).
            quality: JPEG quality, 1-100.
            compress_level: PNG zlib level, 0-9; 1 encodes about 2x (84x84) to 4x (224x224) faster
                than 6 for files 15-20% larger.
            subsampling: JPEG chroma subsampling, ``"4:4:4"``, ``"4:2:2"`` or ``"4:2:0"``.
            layout: axes of a frame, ``"HW"``, ``"HWC"`` or ``"CHW"``; None infers it (``HWC`` when
                only the last axis is 1, 3 or 4, ``CHW`` when only the first is).
            num_threads: threads that encode and decode batches; None: ``min(8, os.cpu_count())``.
            *args: refused (the signature is the reference's).
            **kwargs: refused (the signature is the reference's).

        Raises:
            UnsupportedSpaceError: the space is not an image this format stores.
            ValueError: an option is out of range.
        """
        if args or kwargs:
            raise TypeError(f"ImageStorage.create got unexpected arguments {args or ''} {sorted(kwargs)}")
        if cache_path is None:
            raise UnsupportedOperationError("ImageStorage needs a cache_path (use MemoryStorage for memory)")
        capacity = parse_capacity(capacity)
        if num_threads is not None and (type(num_threads) is not int or num_threads < 1):
            raise ValueError(f"ImageStorage num_threads must be a positive integer or None, got {num_threads!r}")
        codec = make_codec(
            single_instance_space,
            format=format,
            layout=layout,
            quality=quality,
            compress_level=compress_level,
            subsampling=subsampling,
        )
        path = new_directory(cache_path)
        (path / TEMPORARY_DIRECTORY).mkdir()
        _write_sidecar(path, codec, capacity, capacity or 0, SHARD_SIZE, num_threads)
        return cls(single_instance_space, path, read_only=False)

    @classmethod
    def load_from(
        cls,
        path: PathLike,
        single_instance_space: Space,
        *,
        capacity: int | None = None,
        read_only: bool = True,
        multiprocessing: bool = False,
        **kwargs: Any,
    ) -> Self:
        """Open the storage at ``path``; its frames must match ``single_instance_space``.

        Opening for writing also removes the temporary files of an interrupted write (one writer
        at a time) and notes files past the recorded length, which a later grow or flush deletes.
        """
        if kwargs:
            raise TypeError(f"ImageStorage.load_from got unexpected arguments {sorted(kwargs)}")
        storage = cls(single_instance_space, path, read_only=read_only)
        if capacity is not None and storage.capacity != capacity:
            raise SpaceMismatchError(f"{path} holds capacity {storage.capacity}, expected {capacity}")
        if not read_only:
            storage._recover()
        return storage

    def _recover(self) -> None:
        temporary = self.cache_filename / TEMPORARY_DIRECTORY
        temporary.mkdir(exist_ok=True)
        for entry in os.scandir(temporary):
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
        if self.capacity is None:
            self._stale_stop = max(self._length, self._last_slot_on_disk(self._length) + 1)

    def _last_slot_on_disk(self, start: int) -> int:
        """The highest slot at or after ``start`` that has a file (-1 if none): lists the tail shards only."""
        last = -1
        for entry in os.scandir(self.cache_filename):
            if entry.is_dir() and entry.name.isdigit() and int(entry.name) >= start // self._shard_size:
                slots = (_slot_of(name) for name in os.listdir(entry.path))
                last = max([last, *(slot for slot in slots if slot is not None)])
        return last

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        if self.capacity is not None:
            return self.capacity
        if not self.is_mutable:  # a read-only handle follows what the writer last flushed
            self._length = int(_read_sidecar(self.cache_filename)["length"])
        return self._length

    def _resize(self, length: int) -> None:
        """Grow (the new slots read as zeros) or shrink (the files past ``length`` go at the next flush)."""
        if length > self._length:
            self._unlink(range(self._length, min(length, self._stale_stop)))
        self._stale_stop = max(self._stale_stop, self._length)
        self._length = length

    # ------------------------------------------------------------------ data
    def _get(self, index: StorageIndex) -> Any:
        on_host = host_index(index)
        if isinstance(on_host, (int, np.integer)):
            frames = self._read(np.array([on_host], np.int64))[0]
        elif isinstance(on_host, slice):
            frames = self._read(self._slice_slots(on_host))
        else:
            distinct, inverse = np.unique(on_host, return_inverse=True)
            frames = self._read(distinct)
            if distinct.size != on_host.size or not np.array_equal(distinct, on_host):
                frames = np.take(frames, inverse.reshape(-1), axis=0)
        return self.backend.from_numpy(frames, device=self.device)

    def _read(self, slots: np.ndarray) -> np.ndarray:
        """Decode the frames at distinct ``slots`` in parallel: ``(len(slots), *shape)``, zeros where no file."""
        frames = np.zeros((slots.size, *self._codec.shape), self._codec.dtype)
        rows, paths, numbers = self._codec.pil_view(frames), self._paths(slots), slots.tolist()

        def decode(start: int, stop: int) -> None:
            for k in range(start, stop):
                self._codec.decode_into(paths[k], rows[k], numbers[k])

        self._run_chunks(decode, slots.size)
        return frames

    def _set(self, index: StorageIndex, value: Any) -> None:
        """Encode the frames at ``index``; nothing is written unless every frame fits and encodes."""
        self._check_writable("set")
        on_host = host_index(index)
        if isinstance(on_host, (int, np.integer)):
            slots = np.array([on_host], np.int64)
            self._write(slots, self._frames(value, slots, self._codec.shape))
            return
        slots = self._slice_slots(on_host) if isinstance(on_host, slice) else np.asarray(on_host, np.int64)
        frames = self._frames(value, slots, (slots.size, *self._codec.shape))
        reversed_first = np.unique(slots[::-1], return_index=True)[1]  # duplicates: the last write wins
        if reversed_first.size != slots.size:
            keep = slots.size - 1 - reversed_first
            slots, frames = slots[keep], frames[keep]
        self._write(slots, frames)

    def _frames(self, value: Any, slots: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
        """``value`` as host frames ``(len(slots), *shape)`` of the space's dtype, or an error naming the slots."""
        backend = get_backend_or_none(value)
        array = np.asarray(backend.to_numpy(value) if backend is not None else value)
        where = f"{_describe(slots)} of {self.cache_filename}"
        if array.shape != expected:
            raise SpaceMismatchError(f"{where}: expected frames of shape {expected}, got {array.shape}")
        if array.dtype != self._codec.dtype:
            if not np.can_cast(array.dtype, self._codec.dtype, "same_kind"):
                raise SpaceMismatchError(f"{where}: expected {self._codec.dtype.name} frames, got {array.dtype.name}")
            array = array.astype(self._codec.dtype)
        return array.reshape(slots.size, *self._codec.shape)

    def _write(self, slots: np.ndarray, frames: np.ndarray) -> None:
        """Encode every frame to ``tmp/`` in parallel, then rename them all into place."""
        rows, targets, numbers = self._codec.pil_view(frames), self._paths(slots), slots.tolist()
        directory = self.cache_filename / TEMPORARY_DIRECTORY
        temporaries: list[str | None] = [None] * len(numbers)

        def encode(start: int, stop: int) -> None:
            for k in range(start, stop):
                descriptor, temporary = create_temporary(directory / f"{numbers[k]:09d}.{self._codec.extension}")
                temporaries[k] = str(temporary)  # exclusive, random name: a planted symlink is never written through
                with os.fdopen(descriptor, "wb") as handle:
                    self._codec.encode(rows[k], handle)

        self._make_shards(numbers)
        try:
            self._run_chunks(encode, slots.size)
        except BaseException:
            self._unlink_paths(path for path in temporaries if path is not None)
            raise
        for temporary, target in zip(temporaries, targets, strict=True):
            os.replace(cast(str, temporary), target)
        self._pending.update(numbers)

    # ------------------------------------------------------------------ files
    def _paths(self, slots: np.ndarray | Iterable[int]) -> list[str]:
        root, size, extension = self.cache_filename, self._shard_size, self._codec.extension
        numbers = slots.tolist() if isinstance(slots, np.ndarray) else slots
        return [f"{root}/{slot // size:05d}/{slot:09d}.{extension}" for slot in numbers]

    def _make_shards(self, slots: list[int]) -> None:
        for shard in {slot // self._shard_size for slot in slots} - self._known_shards:
            (self.cache_filename / f"{shard:05d}").mkdir(exist_ok=True)
            self._known_shards.add(shard)

    def _unlink(self, slots: range) -> None:
        self._unlink_paths(self._paths(slots))

    @staticmethod
    def _unlink_paths(paths: Iterable[str]) -> None:
        for path in paths:
            with suppress(FileNotFoundError):
                os.unlink(path)

    def _slice_slots(self, index: slice) -> np.ndarray:
        stop = len(self) if index.stop is None else index.stop
        return np.arange(index.start or 0, stop, dtype=np.int64)

    # ------------------------------------------------------------------ threads
    def _run_chunks(self, work: Callable[[int, int], None], count: int) -> None:
        """Run ``work(start, stop)`` over ``[0, count)`` in contiguous chunks, one per thread.

        Every chunk finishes before the first error is raised, so no thread touches files afterwards.
        """
        chunks = min(self._num_threads, count)
        if chunks <= 1:
            if count:
                work(0, count)
            return
        bounds = [count * i // chunks for i in range(chunks + 1)]
        pool = self._pool()
        futures = [pool.submit(work, start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
        wait(futures)
        for future in futures:
            future.result()

    def _pool(self) -> ThreadPoolExecutor:
        """This process's thread pool (a forked child never uses its parent's threads)."""
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = ThreadPoolExecutor(self._num_threads, thread_name_prefix="unibatch-image")
            self._executor_pid = os.getpid()
        return self._executor

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Fsync the files written since the last flush, record the length, then delete files past a shrunk length.

        The fsyncs (one per new file, spread over the thread pool, about 0.1-0.2 ms each here)
        make the rows survive a power loss; a killed process alone loses nothing already renamed.
        """
        if not self.is_mutable:
            return
        pending = sorted(slot for slot in self._pending if slot < self._length)
        self._pending = set()
        if pending:
            paths = self._paths(pending)
            self._run_chunks(lambda start, stop: _fsync_files(paths[start:stop]), len(paths))
            for shard in sorted({slot // self._shard_size for slot in pending}):
                fsync_directory(self.cache_filename / f"{shard:05d}")
            fsync_directory(self.cache_filename)
        if self._length != self._recorded_length:
            self._write_own_sidecar(self.cache_filename, self._length)
        if self._stale_stop > self._length:  # only once the shorter length is committed (a reopen cleans up)
            self._unlink(range(self._length, self._stale_stop))
            self._remove_empty_shards(self._length, self._stale_stop)
            self._stale_stop = self._length

    def _remove_empty_shards(self, length: int, stop: int) -> None:
        first = -(-length // self._shard_size)
        for shard in range(first, -(-stop // self._shard_size)):
            with suppress(OSError):
                os.rmdir(self.cache_filename / f"{shard:05d}")
            self._known_shards.discard(shard)

    def _write_own_sidecar(self, path: Path, length: int) -> None:
        _write_sidecar(path, self._codec, self.capacity, length, self._shard_size, self._num_threads_option)
        if path == self.cache_filename:
            self._recorded_length = length

    def dumps(self, path: PathLike) -> None:
        """Flush in place, or write a complete copy to the directory ``path`` (hard links where possible)."""
        self.flush()
        target = Path(path)
        if target.resolve() == self.cache_filename.resolve():
            return
        _prepare_copy_target(target)
        length = len(self)
        for shard in range(-(-length // self._shard_size)):
            _copy_shard(self.cache_filename / f"{shard:05d}", target / f"{shard:05d}", length)
        (target / TEMPORARY_DIRECTORY).mkdir()
        fsync_directory(target)
        self._write_own_sidecar(target, length)

    def close(self) -> None:
        """Shut the thread pool down (written rows stay where they are; :meth:`flush` makes them durable)."""
        super().close()
        executor, self._executor = self._executor, None
        if executor is not None and self._executor_pid == os.getpid():
            executor.shutdown(wait=True)
        self._executor_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_executor=None, _executor_pid=None, _pending=set(), _known_shards=set())
        return state


def _slot_of(name: str) -> int | None:
    """The slot number of a file name ``000000123.png``, None for anything else."""
    stem, _, extension = name.partition(".")
    return int(stem) if stem.isdigit() and extension in ("png", "jpg") else None


def _describe(slots: np.ndarray) -> str:
    if slots.size == 1:
        return f"slot {int(slots[0])}"
    shown = ", ".join(str(slot) for slot in slots[:4].tolist())
    return f"slots [{shown}{', ...' if slots.size > 4 else ''}]"


def _fsync_files(paths: list[str]) -> None:
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _prepare_copy_target(target: Path) -> None:
    """An empty directory at ``target``; an earlier image storage copy there is replaced."""
    if target.exists() and any(target.iterdir()):
        if not (target / SIDECAR).exists():
            raise FileExistsError(f"{target} exists, is not empty and is not an image storage")
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)


def _copy_shard(source: Path, target: Path, length: int) -> None:
    """Link (or copy, across file systems) the files of ``source`` whose slot is below ``length``."""
    if not source.is_dir():
        return
    target.mkdir()
    for name in os.listdir(source):
        slot = _slot_of(name)
        if slot is None or slot >= length:
            continue
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copyfile(source / name, target / name)
            _fsync_files([str(target / name)])
    fsync_directory(target)


def _refuse_linked_directories(path: Path) -> None:
    """The shard directories and ``tmp/`` are real directories: a symlink there would move writes and deletes out."""
    with os.scandir(path) as entries:
        linked = [e.path for e in entries if (e.name.isdigit() or e.name == TEMPORARY_DIRECTORY) and e.is_symlink()]
    for entry in linked:
        refuse_symlink(entry, source=path / SIDECAR)


def _write_sidecar(
    path: Path, codec: ImageCodec, capacity: int | None, length: int, shard_size: int, num_threads: int | None
) -> None:
    atomic_write_json(
        path / SIDECAR,
        {
            "format_version": FORMAT_VERSION,
            "capacity": capacity,
            "length": length,
            "shard_size": shard_size,
            "num_threads": num_threads,
            "leaf": {"dtype": codec.dtype.str, "shape": list(codec.shape)},
            "image": codec.options(),
        },
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = read_sidecar(path / SIDECAR, "image", FORMAT_VERSION)
    missing = {"capacity", "length", "shard_size", "num_threads", "leaf", "image"} - set(sidecar)
    if missing:
        raise FormatVersionError(f"{path / SIDECAR} is not an image storage sidecar: {sorted(missing)} missing")
    return sidecar


def _codec_for(space: Space, sidecar: dict[str, Any], path: Path) -> ImageCodec:
    """The stored codec, after checking the stored frames have the space's dtype and shape."""
    leaf = sidecar["leaf"]
    stored = [("", np.dtype(leaf["dtype"]).str, tuple(leaf["shape"]))]
    expected = [(item.name, item.numpy_dtype.str, item.shape) for item in leaf_table(space)]
    if stored != expected:
        raise SpaceMismatchError(f"{path} stores leaves {stored}, but the space has {expected}")
    options = sidecar["image"]
    if not isinstance(options, dict) or set(options) != IMAGE_OPTIONS:
        raise FormatVersionError(f"{path / SIDECAR} has image options {options!r}; expected {sorted(IMAGE_OPTIONS)}")
    return make_codec(space, **options)
