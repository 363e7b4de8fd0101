"""``unibatch show PATH --episode N --key KEY --out FILE``: look at one episode.

Writes the image key ``KEY`` of the episode whose id is ``N`` (the ids ``unibatch info`` lists: a
robomimic ``demo_10`` is id 10), or of the episode at ``--position P`` (``0 <= P < episodes``,
negative from the end; the default is position 0), as a video, chosen by the extension of
``FILE``: ``.mp4`` (PyAV, H.264 in ``yuv420p``, or MPEG-4 Part 2 when the FFmpeg build has no
libx264; odd sides are padded by repeating the last row or column) or ``.gif`` (Pillow). Frames
are ``uint8`` of shape ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (alpha is
dropped).

Next to the video (``FILE`` with the suffix ``.png``, or ``--plot PNG``; ``--no-plot`` skips it) a
PNG plot shows every low-dimensional key of the episode over its steps (matplotlib, the
``unibatch[plot]`` extra; skipped with a message when it is not installed). ``--plot`` alone
writes only the plot. A buffer without episodes counts as one episode holding every row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from unibatch._optional import require
from unibatch.batches import BatchBase
from unibatch.buffers import ReplayBuffer
from unibatch.cli._open import Source, UsageError, leaf_at, open_source, resolve_step_key
from unibatch.errors import MissingDependencyError
from unibatch.spaces import BinarySpace, BoxSpace, Space
from unibatch.spaces._tree import leaves

VIDEO_SUFFIXES = (".mp4", ".gif")
CHANNELS = (1, 3, 4)
DEFAULT_FPS = 10
MAX_PLOT_WIDTH = 32
"""Keys with more elements per step than this are not plotted (one line per element)."""
IMAGE_RULE = "uint8 frames of shape (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "show",
        help="write an episode's camera key as mp4/gif and plot its low-dimensional keys",
        description="Write the image key KEY of episode N as an mp4 or gif (by the extension of FILE) and a PNG "
        "plot of the episode's low-dimensional keys over time.",
    )
    parser.add_argument(
        "path", type=Path, metavar="PATH", help="a unibatch buffer directory or a dataset in another format"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--episode", type=int, metavar="ID", help="the episode with this id (see `unibatch info`)")
    which.add_argument(
        "--position", type=int, metavar="P", help="the episode at this position, negative from the end (default 0)"
    )
    parser.add_argument("--key", metavar="KEY", help="the image key to write, e.g. obs/image (see `unibatch info`)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="the video to write: FILE.mp4 or FILE.gif")
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="the PNG plot to write (default: OUT with the suffix .png)"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="FPS",
        help=f"frames per second (default: the source's, else {DEFAULT_FPS})",
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    out, plot = _outputs(arguments)
    source = open_source(arguments.path)
    try:
        start, stop, label = episode_rows(source, arguments.episode, arguments.position)
        fps = arguments.fps or source.fps or DEFAULT_FPS
        if out is not None:
            keys = resolve_step_key(source, arguments.key)
            frames = rgb_frames(source.steps.single_space, keys, _read(source.steps, [keys], start, stop)[0])
            write_video(out, frames, fps)
            height, width = frames.shape[1:3]
            print(f"wrote {out}: {len(frames)} frames of {arguments.key} ({width}x{height}) from {label}, {fps:g} fps")
        if plot is not None:
            _plot(source, start, stop, label, plot)
    finally:
        source.close()
    return 0


def _outputs(arguments: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """The video and plot files to write, checked before anything is read."""
    out: Path | None = arguments.out
    if (out is None) != (arguments.key is None):
        raise UsageError("--key and --out go together: --key KEY --out FILE.mp4 (or .gif)")
    if out is not None and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"--out must end in .mp4 or .gif, got {out.name!r}")
    plot: Path | None = arguments.plot
    if plot is None and out is not None and not arguments.no_plot:
        plot = out.with_suffix(".png")
    if arguments.no_plot:
        plot = None
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot must end in .png, got {plot.name!r}")
    if out is None and plot is None:
        raise UsageError("nothing to write: give --key KEY --out FILE.mp4 (or .gif), and/or --plot FILE.png")
    return out, plot


def episode_rows(source: Source, episode_id: int | None, position: int | None) -> tuple[int, int, str]:
    """Rows ``[start, stop)`` of the episode with id ``episode_id`` or at ``position`` (default: position 0).

    Returns the rows and how to call the episode, naming both its id and its position
    (``"episode id 10 (position 2, 4 steps)"``), so the output says which one was meant.
    """
    episodes = source.episodes
    if episodes is None:
        asked = position if episode_id is None else episode_id
        if asked not in (None, 0, -1):
            raise UsageError(f"episode {asked} is out of range: {source.path} has no episodes (use 0 for every row)")
        return 0, len(source.steps), f"all {len(source.steps)} rows"
    ids = np.asarray(episodes.ids)
    count = episodes.count
    if episode_id is not None:
        matches = np.flatnonzero(ids == episode_id)
        if not len(matches):
            raise UsageError(
                f"no episode has id {episode_id}: {source.path} has {count} episodes with ids {_id_list(ids)} "
                "(--position P picks the episode at position P)"
            )
        index = int(matches[0])
    else:
        asked_position = 0 if position is None else position
        if not -count <= asked_position < count:
            valid = f"0 to {count - 1}" if count else "none"
            raise UsageError(f"position {asked_position} is out of range: {source.path} has {count} episodes ({valid})")
        index = asked_position % count
    start = int(episodes.starts[index])
    stop = start + int(episodes.lengths[index])
    label = f"episode id {int(ids[index])} (position {index}"
    if stop == start:
        raise UsageError(f"{label}) of {source.path} has no steps")
    return start, stop, f"{label}, {stop - start} steps)"


def _id_list(ids: np.ndarray, shown: int = 8) -> str:
    """``"0 to 9"`` for consecutive ids, else the first ``shown`` (``"4, 8, 15, ... (12 in all)"``)."""
    if not len(ids):
        return "none"
    if np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))):
        return f"{int(ids[0])} to {int(ids[-1])}"
    listed = ", ".join(str(int(i)) for i in ids[:shown])
    return listed if len(ids) <= shown else f"{listed}, ... ({len(ids)} in all)"


def _read(steps: BatchBase, keys: list[tuple[str, ...]], start: int, stop: int) -> list[np.ndarray]:
    """The values of each key path over rows ``[start, stop)``, as NumPy arrays.

    A buffer whose storage reads columns reads only those keys; other sources read the rows once.
    """
    rows = slice(start, stop)
    if isinstance(steps, ReplayBuffer) and steps.storage.supports_columns:
        return [np.asarray(steps.get_column(list(key)).get_at(rows)) for key in keys]
    data = steps.get_at(rows)
    values = []
    for key in keys:
        value = data
        for part in key:
            value = value[part]
        values.append(np.asarray(value))
    return values


# ---------------------------------------------------------------------- video
def frame_layout(space: Space, key: str) -> str:
    """``"HW"``, ``"HWC"`` or ``"CHW"`` for an image leaf; :class:`UsageError` for any other key."""
    shape = tuple(space.shape or ()) if isinstance(space, BoxSpace) else ()
    dtype = space.backend.dtype_name(space.dtype) if isinstance(space, BoxSpace) else type(space).__name__
    if isinstance(space, BoxSpace) and dtype == "uint8":
        if len(shape) == 2:
            return "HW"
        if len(shape) == 3 and shape[-1] in CHANNELS:
            return "HWC"
        if len(shape) == 3 and shape[0] in CHANNELS:
            return "CHW"
    raise UsageError(f"key {key!r} is not an image ({dtype}, shape {shape}); expected {IMAGE_RULE}")


def rgb_frames(space: Space, keys: tuple[str, ...], values: np.ndarray) -> np.ndarray:
    """``uint8[T, H, W, 3]`` frames from the values of the image leaf at ``keys`` (``(T, *leaf shape)``)."""
    layout = frame_layout(leaf_at(space, keys), "/".join(keys))
    frames = values[..., None] if layout == "HW" else values
    if layout == "CHW":
        frames = frames.transpose(0, 2, 3, 1)
    channels = frames.shape[-1]
    if channels == 1:
        frames = np.repeat(frames, 3, axis=-1)
    elif channels == 4:
        frames = frames[..., :3]
    return np.ascontiguousarray(frames, dtype=np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write ``uint8[T, H, W, 3]`` frames as ``path`` (``.mp4`` or ``.gif``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        write_gif(path, frames, fps)
    else:
        write_mp4(path, frames, fps)


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264 (or MPEG-4 Part 2) in ``yuv420p``; odd sides are padded by repeating the edge."""
    av = require("av", "video")
    height, width = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        options = {"crf": "18"} if codec == "libx264" else {}  # visually lossless for a preview
        stream = container.add_stream(codec, rate=round(fps) or 1, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """An animated GIF that loops, one frame per ``1000 / fps`` ms (Pillow)."""
    image = require("PIL.Image", "image")
    pictures = [image.fromarray(frame) for frame in frames]
    duration = max(int(round(1000 / fps)), 10)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=duration, loop=0)


# ---------------------------------------------------------------------- plot
def low_dimensional_keys(space: Space) -> tuple[list[tuple[str, ...]], list[str]]:
    """Key paths of numeric leaves of at most ``MAX_PLOT_WIDTH`` elements, and the larger ones that are not images."""
    chosen, skipped = [], []
    for path, leaf in leaves(space):
        if not isinstance(leaf, (BoxSpace, BinarySpace)):
            continue
        size = int(np.prod(leaf.shape or (), dtype=np.int64))
        if size <= MAX_PLOT_WIDTH:
            chosen.append(tuple(path.split("/")) if path else ())
        elif not _is_image(leaf):
            skipped.append(path)
    return chosen, skipped


def _is_image(leaf: Space) -> bool:
    try:
        frame_layout(leaf, "")
    except UsageError:
        return False
    return True


def _plot(source: Source, start: int, stop: int, label: str, target: Path) -> None:
    keys, skipped = low_dimensional_keys(source.steps.single_space)
    if not keys:
        print(f"no plot: {source.path} has no low-dimensional keys", file=sys.stderr)
        return
    try:
        figure_module = require("matplotlib.figure", "plot")
    except MissingDependencyError as error:
        print(f"skipped the plot: {error}", file=sys.stderr)
        return
    values = _read(source.steps, keys, start, stop)
    names = ["/".join(key) or "value" for key in keys]
    write_plot(figure_module, target, names, values, f"{source.path}: {label}")
    print(f"wrote {target}: {len(keys)} low-dimensional keys over {stop - start} steps" + _skipped(skipped))


def _skipped(skipped: list[str]) -> str:
    return f" (not plotted, more than {MAX_PLOT_WIDTH} elements: {', '.join(skipped)})" if skipped else ""


def write_plot(figure_module: Any, target: Path, names: list[str], values: list[np.ndarray], title: str) -> None:
    """One panel per key, one line per element, the step in the episode on the x axis."""
    figure = figure_module.Figure(figsize=(8, 0.4 + 1.6 * len(names)), layout="constrained")
    axes = figure.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for axis, name, value in zip(axes, names, values, strict=True):
        series = value.reshape(len(value), -1).astype(np.float64)
        steps = np.arange(len(series))
        for element in range(series.shape[1]):
            axis.plot(steps, series[:, element], linewidth=1)
        axis.set_title(name, loc="left", fontsize=9)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("step in episode")
    figure.suptitle(title, fontsize=10)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
