"""Bulk jobs on a real Dask LocalCluster: exactly once, resumable, through worker deaths."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentzip import data, decompress, metrics
from latentzip.errors import LatentzipError
from latentzip.scale import bulk_compress, bulk_decode, bulk_encode, bulk_eval, cluster, manifest
from latentzip.scale.store import Store

from .conftest import assert_clean_error, run_cli

@pytest.fixture(scope="module")
def client():
    with cluster.connect(workers=2) as joined:
        yield joined


def _tree(root: Path, images: np.ndarray) -> list[str]:
    """PNGs under `root`, a third of them one directory down; their names, sorted."""
    names = [f"{'deeper/' if k % 3 == 0 else ''}{k:04d}.png" for k in range(len(images))]
    for name, image in zip(names, images):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        data.write_png(root / name, image)
    return sorted(names)


def _decoded(out: Path, names: list[str]) -> list[np.ndarray]:
    return [data.decode_image(out / name, name)[..., 0] for name in names]


def test_encode_decode_match_the_plain_codec_and_resume(tmp_path, client, dense_codec, digits_test):
    images = digits_test.images[:120]
    names = _tree(tmp_path / "src", images)
    job = bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=25, psnr=True, client=client,
                      progress=False)
    assert (job.shards, job.skipped, len(job.rows)) == (5, 0, 120)
    kind, rows = manifest.read(Store(tmp_path / "dst"))
    assert kind == "images" and [r["name"] for r in rows] == names
    originals = [images[int(Path(n).stem)] for n in names]
    plain = dense_codec.decode(dense_codec.encode(originals))
    for row, original, expected in zip(rows, originals, plain):
        assert row["checksum"] == hashlib.sha256((tmp_path / "src" / row["name"]).read_bytes()).hexdigest()
        assert row["psnr"] == pytest.approx(metrics.psnr(original.reshape(expected.shape), expected))
    assert sum(r["bytes"] for r in rows) <= sum(p.stat().st_size for p in (tmp_path / "dst").glob("shard-*.ltz"))

    bulk_decode(tmp_path / "dst", tmp_path / "out", model=dense_codec, client=client, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(_decoded(tmp_path / "out", names), plain))
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")) == names
    with pytest.raises(LatentzipError, match="not empty"):  # its PNGs would be replaced
        bulk_decode(tmp_path / "dst", tmp_path / "out", model=dense_codec, client=client, progress=False)
    bulk_decode(tmp_path / "dst", tmp_path / "out", model=dense_codec, force=True, client=client, progress=False)
    with pytest.raises(LatentzipError, match="not empty"):  # not an earlier run of this job
        bulk_encode(dense_codec, tmp_path / "src", tmp_path / "out", client=client, progress=False)

    shard = tmp_path / "dst" / "shard-000002.ltz"
    before = shard.stat().st_mtime_ns
    (tmp_path / "dst" / ".done" / "000003.json").unlink()
    again = bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=25, psnr=True, client=client,
                        progress=False)
    assert again.skipped == 4 and shard.stat().st_mtime_ns == before and again.rows == job.rows
    other = bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=25, client=client, progress=False)
    assert other.skipped == 0  # other settings: nothing is taken from the earlier run


def test_names_that_differ_only_in_suffix_decode_apart_across_shards(tmp_path, client, dense_codec, digits_test):
    """a.webp in one shard and a.bmp in the next both wanted a.png."""
    from PIL import Image

    (tmp_path / "src").mkdir()
    for k, name in enumerate(["a.bmp", "a.webp", "b.png", "c.bmp"]):
        Image.fromarray(digits_test.images[k, :, :, 0]).save(tmp_path / "src" / name, lossless=True)
    bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=1, client=client, progress=False)
    bulk_decode(tmp_path / "dst", tmp_path / "out", model=dense_codec, client=client, progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.bmp.png", "a.webp.png", "b.png", "c.png"]


def test_eval_reports_what_encode_writes(tmp_path, client, dense_codec, digits_test):
    _tree(tmp_path / "src", digits_test.images[:60])
    bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=20, client=client, progress=False)
    job = bulk_eval(dense_codec, tmp_path / "src", shard_size=20, client=client, progress=False)
    written = sum(p.stat().st_size for p in (tmp_path / "dst").glob("shard-*.ltz"))
    assert job.summary["images"] == 60 and job.summary["file_bytes"] == written
    assert job.summary["bpp"] == pytest.approx(8 * written / (60 * 64))
    assert 15 < job.summary["psnr"] < 60
    assert not (tmp_path / "src" / "manifest.parquet").exists()


def test_shards_hold_at_most_their_pixels_as_the_headers_say(tmp_path, client, dense_codec, digits_test, monkeypatch):
    """A thousand photographs to a shard was more than a worker holds and more latents
    than one file may have; shards now close at SHARD_PIXELS too (an image larger than
    that alone), from sizes the workers read from the files' headers."""
    from latentzip.scale import jobs

    assert [len(s.names) for s in jobs.plan(list("abcdef"), 4, [1, 1, 1 << 26, 1, 1, 1])] == [2, 1, 3]
    assert [len(s.names) for s in jobs.plan(list("abcdef"), 2, [1] * 6)] == [2, 2, 2]
    names = _tree(tmp_path / "src", digits_test.images[:70])
    monkeypatch.setattr(jobs, "SHARD_PIXELS", 30 * 8 * 8)
    job = bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", client=client, progress=False)
    assert job.shards == 3 and [r["shard"] for r in job.rows] == [k // 30 for k in range(70)]
    assert [r["name"] for r in job.rows] == names
    (tmp_path / "src" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(LatentzipError, match="broken.png is not an image"):
        bulk_eval(dense_codec, tmp_path / "src", client=client, progress=False)


def test_compress_restores_every_file(tmp_path, client):
    source = tmp_path / "logs"
    files = {f"day{k}/{k}.log": (f"line {k}\n" * (50 + k)).encode() for k in range(7)}
    files["raw.bin"] = os.urandom(3000)
    for name, raw in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(raw)
    job = bulk_compress(source, tmp_path / "packed", level=1, shard_size=3, client=client, progress=False)
    assert job.shards == 3 and sorted(r["name"] for r in job.rows) == sorted(files)
    for row in job.rows:
        raw = files[row["name"]]
        packed = (tmp_path / "packed" / f"{row['name']}.lzc").read_bytes()
        assert decompress(packed) == raw and row["bytes"] == len(packed) and row["source_bytes"] == len(raw)
        assert row["checksum"] == hashlib.sha256(raw).hexdigest()
    assert manifest.read(Store(tmp_path / "packed"))[0] == "files"


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path, dense_codec, digits):
    names = _tree(tmp_path / "src", digits.images[:1000])
    done = tmp_path / "dst" / ".done"
    killed: list[int] = []

    with cluster.connect(workers=2) as own:
        victim = next(iter(own.run(os.getpid).values()))

        def kill_when_started() -> None:
            while not (done.is_dir() and any(done.iterdir())):
                time.sleep(0.005)
            killed.append(len(list(done.iterdir())))
            os.kill(victim, signal.SIGKILL)

        watcher = threading.Thread(target=kill_when_started, daemon=True)
        watcher.start()
        job = bulk_encode(dense_codec, tmp_path / "src", tmp_path / "dst", shard_size=5, client=own, progress=False)
        watcher.join(timeout=5)
    assert killed and killed[0] < job.shards  # the worker died mid-job
    rows = manifest.read(Store(tmp_path / "dst"))[1]
    assert [r["name"] for r in rows] == names  # each input once, in order
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == \
        sorted([".done", "manifest.parquet", *(f"shard-{k:06d}.ltz" for k in range(job.shards))])

    decoded = [image for k in range(job.shards)
               for image in dense_codec.decode((tmp_path / "dst" / f"shard-{k:06d}.ltz").read_bytes())]
    plain = dense_codec.decode(dense_codec.encode([digits.images[int(Path(n).stem)] for n in names]))
    assert len(decoded) == 1000 and all(np.array_equal(a, b) for a, b in zip(decoded, plain))


def test_bulk_command_line_and_its_errors(tmp_path, model_file, digits_test):
    _tree(tmp_path / "src", digits_test.images[:30])
    proc = run_cli("bulk", "encode", "-m", str(model_file), str(tmp_path / "src"), "-o", str(tmp_path / "dst"),
                   "--workers", "1", "--shard-size", "10", "--psnr")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "30 image(s) in 3 shard(s)" in proc.stderr.decode()
    proc = run_cli("bulk", "decode", str(tmp_path / "dst"), "-o", str(tmp_path / "out"), "-m", str(model_file),
                   "--workers", "1")
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(list((tmp_path / "out").rglob("*.png"))) == 30

    (tmp_path / "src" / "deeper" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert_clean_error(run_cli("bulk", "encode", "-m", str(model_file), str(tmp_path / "src"), "-o",
                               str(tmp_path / "dst2"), "--workers", "1"), "0003.png")
    assert not (tmp_path / "dst2" / "manifest.parquet").exists()
    assert_clean_error(run_cli("bulk", "decode", str(tmp_path / "src"), "-o", str(tmp_path / "o2"), "--workers", "1"),
                       "manifest.parquet")
    assert_clean_error(run_cli("bulk", "encode", "-m", str(model_file), str(tmp_path / "nope"), "-o",
                               str(tmp_path / "d3"), "--workers", "1"), "no such file")
