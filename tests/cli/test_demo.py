"""``unibatch demo`` records, reopens and samples a small dataset and says what it did."""

from __future__ import annotations

import subprocess
import sys

from unibatch.cli import main


def test_demo_in_process(tmp_path, capsys):
    arguments = ["demo", "--episodes", "4", "--steps", "6", "--image-size", "8", "--batches", "2", "--batch-size", "8"]
    assert main([*arguments, "--path", str(tmp_path / "robot")]) == 0
    output = capsys.readouterr().out
    assert "recorded 4 episodes x 6 steps = 24 steps" in output
    assert "[numpy] reopened 24 steps of 4 episodes" in output
    assert "frame-stacked batch: image (8, 4, 3, 8, 8) uint8, mask (8, 4)" in output
    assert (tmp_path / "robot" / "metadata.json").is_file()


def test_python_dash_m_unibatch():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unibatch",
            "demo",
            "--episodes",
            "2",
            "--steps",
            "3",
            "--image-size",
            "4",
            "--batches",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "batches/s" in result.stdout
