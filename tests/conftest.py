"""Shared fixtures: small codecs trained for real on scikit-learn's 8x8 digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentzip import data
from latentzip.image.train import TrainConfig, train


@pytest.fixture(scope="session")
def digits() -> data.Dataset:
    return data.load("digits:train")


@pytest.fixture(scope="session")
def digits_test() -> data.Dataset:
    return data.load("digits:test")


@pytest.fixture
def shots(tmp_path, digits_test) -> Path:
    """A directory of 6 real 8x8 digit PNGs."""
    write_images(tmp_path / "shots", digits_test.images, 6)
    return tmp_path / "shots"


@pytest.fixture(scope="session")
def dense_codec(digits):
    cfg = TrainConfig(arch="deep", latent=12, hidden=(64,), lmbda=0.02, epochs=6, batch_size=64, seed=1)
    return train(digits.images, cfg, progress=False).codec


@pytest.fixture(scope="session")
def conv_codec(digits):
    cfg = TrainConfig(arch="conv", latent=8, hidden=(16,), lmbda=0.02, epochs=3, batch_size=64, seed=1)
    return train(digits.images, cfg, progress=False).codec


@pytest.fixture(scope="session")
def model_file(dense_codec, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "digits.model"
    dense_codec.save(path)
    return path


def never_direct(images, max_error, step=None) -> tuple[bytes, np.ndarray]:
    """In place of image/direct.py's `encode`: coding directly priced out of reach."""
    return b"", np.full(len(images), np.inf)


@pytest.fixture
def model_only(monkeypatch) -> None:
    """Files code every image with the model, none directly (image/direct.py): for tests
    of the model's own code, which `reconstruct` and `code_bits` describe."""
    from latentzip.image import direct

    monkeypatch.setattr(direct, "encode", never_direct)


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """Eight real colour patches (48x48 of scikit-image's photographs)."""
    return data.load("photos:test[:8]").images[:, :48, :48]


def in_process(capsys, *args: str) -> tuple[int, str]:
    """Run the command in this process (fast); returns (status, stderr)."""
    from latentzip.cli import main

    status = main(list(args))
    return status, capsys.readouterr().err


def run_cli(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m latentzip ARGS` in a fresh process, as a user would."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "latentzip", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=env,
        timeout=600,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """A user error: non-zero exit, one line on stderr naming the problem, no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert "Traceback" not in err and "internal error" not in err, err  # a bug's line is not a user error
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word.lower() in err.lower(), err


def write_images(directory: Path, images: np.ndarray, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"img_{i:03d}.png"
        data.write_png(path, images[i])
        paths.append(path)
    return paths
