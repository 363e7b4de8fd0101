"""Dataset ids instead of paths: where Minari and LeRobot keep a dataset they downloaded by its id.

* **Minari** keeps ``D4RL/door/human-v2`` under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).
* **LeRobot** keeps ``lerobot/pusht`` under ``$HF_LEROBOT_HOME`` (default ``$HF_HOME/lerobot``, with
  ``HF_HOME`` defaulting to ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``); a dataset the
  Hugging Face hub client downloaded lies in the hub cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``)
  as ``datasets--lerobot--pusht/snapshots/<revision>``, the revision ``refs/main`` names first.

Only the locations are looked at; nothing is downloaded.

>>> import os, tempfile
>>> home = tempfile.mkdtemp()
>>> os.makedirs(os.path.join(home, "D4RL", "door", "human-v2"))
>>> found = resolve_dataset_id("D4RL/door/human-v2", environ={"MINARI_DATASETS_PATH": home})
>>> found.relative_to(home).as_posix()
'D4RL/door/human-v2'
>>> resolve_dataset_id("../etc", environ={"MINARI_DATASETS_PATH": home}) is None
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath


def looks_like_dataset_id(text: str) -> bool:
    """Whether ``text`` can be a dataset id: relative, ``/``-separated names, none of them ``.`` or ``..``."""
    parts = PurePosixPath(text).parts
    return bool(parts) and not text.startswith(("/", "~", "./")) and not any(part in (".", "..") for part in parts)


def dataset_id_locations(dataset_id: str, environ: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """``(where, directory)`` pairs at which the tools would keep ``dataset_id``, in the order they are looked at.

    ``where`` says which setting gave the directory (``"MINARI_DATASETS_PATH"``, ``"HF_LEROBOT_HOME"``,
    ``"the Hugging Face hub cache"``), for messages. Empty when ``dataset_id`` cannot be an id.
    """
    if not looks_like_dataset_id(dataset_id):
        return []
    env = os.environ if environ is None else environ
    minari_root = Path(env.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
    hf_home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    lerobot_root = Path(env.get("HF_LEROBOT_HOME") or hf_home / "lerobot")
    locations = [("MINARI_DATASETS_PATH", minari_root / dataset_id), ("HF_LEROBOT_HOME", lerobot_root / dataset_id)]
    snapshot = _hub_snapshot(Path(env.get("HF_HUB_CACHE") or hf_home / "hub"), dataset_id)
    if snapshot is not None:
        locations.append(("the Hugging Face hub cache", snapshot))
    return locations


def resolve_dataset_id(dataset_id: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory holding the dataset ``dataset_id`` (a Minari id or a LeRobot repo id), or None."""
    for _, directory in dataset_id_locations(dataset_id, environ):
        if directory.is_dir():
            return directory
    return None


def existing_path_or_id(path: Path) -> Path:
    """``path`` when it exists, else the directory of the dataset id it spells.

    Raises:
        FileNotFoundError: neither; the message lists where the id was looked for, with the variables.
    """
    if path.exists():
        return path
    found = resolve_dataset_id(str(path))
    if found is not None:
        return found
    looked = where_ids_are_looked_up(str(path))
    raise FileNotFoundError(f"{path} does not exist" + (f"; {looked}" if looked else ""))


def where_ids_are_looked_up(dataset_id: str, environ: Mapping[str, str] | None = None) -> str:
    """A sentence for an error message: where ``dataset_id`` was looked for as an id, and which variable sets each."""
    locations = dataset_id_locations(dataset_id, environ)
    if not locations:
        return ""
    listed = "; ".join(f"{directory} ({where})" for where, directory in locations)
    return f"as a dataset id it was looked for in {listed}"


def _hub_snapshot(hub_cache: Path, repo_id: str) -> Path | None:
    """The snapshot of dataset ``repo_id`` in the hub cache: the one ``refs/main`` names, else the newest."""
    repo = hub_cache / ("datasets--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    main = repo / "refs" / "main"
    if main.is_file():
        named = snapshots / main.read_text().strip()
        if named.is_dir() and looks_like_dataset_id(main.read_text().strip()):
            return named
    candidates = [path for path in snapshots.iterdir() if path.is_dir()]
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None
