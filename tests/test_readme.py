"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["data"]["step_data"]["obs"]["image"].shape == (3, 4, 3, 64, 64)
    assert namespace["metadata"]["slice_valid_mask"].tolist()[0] == [False, False, False, True]


def test_readme_storage_formats_example_runs(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["frames"].shape == (2, 64, 64, 3)
    assert len(list((tmp_path / "camera").rglob("*.mkv"))) == 2  # one video file per committed episode
