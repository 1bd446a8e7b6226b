"""Hostile input and faults: crafted files with valid checksums, signals, races and links.

Whatever a file or another process does, latentzip answers with its own one-line error,
bounded work, and no damage to the user's files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentzip import container, data, fsio
from latentzip.errors import FormatError, LatentzipError, LimitError
from latentzip.image import catalog, entropy
from latentzip.image.codec import ImageCodec
from latentzip.image.model import Autoencoder
from latentzip.image.transforms import NetConfig
from latentzip.lossless import Compressor, Decompressor, compress, decompress
from latentzip.lossless.predict import LEVELS as MIXING_LEVELS, Model

from .conftest import assert_clean_error, run_cli
from .crafted import block_record, catalogs, delta_record, image_catalog, ltz, ltz_files, lzc_files, lzc_header, \
    name_record

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _text(n: int) -> bytes:
    words = b"a hostile file meets a careful reader and every field is checked first".split()
    return b" ".join(words[(i * 7) % len(words)] for i in range(n // 4))[:n]


def _bounded(call, seconds: float = 5.0, megabytes: int = 200):
    """Run `call`; fail if it takes longer or (in NumPy and Python objects) more memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        return call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.perf_counter() - started < seconds
        assert peak < megabytes << 20


# --- the resource policy of image files ------------------------------------------------


def test_the_budget_is_an_allowance_plus_a_multiple_of_the_file_size():
    small, large = catalog.Budget.of(26), catalog.Budget.of(1 << 20)
    assert small.images == 4096 + 26 * 16 and small.values == (1 << 24) + 26 * (1 << 14)
    assert large.images > small.images and large.name_bytes > small.name_bytes
    assert catalog.Budget.of(1 << 28).images == catalog.MAX_IMAGES
    with pytest.raises(LimitError, match="larger than latentzip reads"):
        catalog.Budget.of(catalog.MAX_FILE + 1)


def test_a_26_byte_file_cannot_declare_a_million_images(dense_codec):
    blob = ltz(dense_codec.fingerprint, image_catalog(1 << 20, (8, 8, 1)))
    assert len(blob) == 26
    with pytest.raises(LimitError, match="1048576 images"):
        _bounded(lambda: dense_codec.decode(blob), seconds=1, megabytes=5)


def test_what_a_tiny_file_may_declare_decodes_in_bounded_time_and_memory(dense_codec):
    count = catalog.Budget.of(25).images
    blob = ltz(dense_codec.fingerprint, image_catalog(count, (8, 8, 1)))
    assert len(blob) == 25 and len(_bounded(lambda: dense_codec.decode(blob))) == count
    with pytest.raises(LimitError):
        dense_codec.decode(ltz(dense_codec.fingerprint, image_catalog(count + 1, (8, 8, 1))))


@pytest.mark.parametrize("shape", [(1 << 13, 1 << 13, 3), (1 << 14, 1 << 14, 1), (1, 1 << 40, 1)])
def test_pixels_are_held_to_the_budget_before_any_allocation(conv_codec, shape):
    with pytest.raises(LimitError, match="pixel"):
        _bounded(lambda: conv_codec.decode(ltz(conv_codec.fingerprint, image_catalog(1, shape))), 1, 5)


def test_a_name_copied_again_and_again_is_held_to_the_budget(dense_codec):
    long = name_record(0, (b"n" * 200 + b"/") * 4 + b"x.png")  # 809 bytes, copied 1,999 times
    body = long + b"".join(delta_record([]) for _ in range(1999))
    blob = ltz(dense_codec.fingerprint, image_catalog(2000, (8, 8, 1), body, names=True, deflated=True))
    assert len(blob) < 200
    with pytest.raises(LimitError, match="name bytes"):
        _bounded(lambda: dense_codec.decode(blob), 1, 20)


def test_a_name_growing_record_by_record_stops_at_the_name_limit(dense_codec):
    body = b"".join(name_record(i, b"a") for i in range(3000))
    blob = ltz(dense_codec.fingerprint, image_catalog(3000, (8, 8, 1), body, names=True, deflated=True))
    with pytest.raises(FormatError, match="longer than") as caught:
        _bounded(lambda: dense_codec.decode(blob), 1, 20)
    assert len(str(caught.value)) < 200


def test_a_name_2000_directories_deep_is_refused_by_its_depth(dense_codec):
    name = b"d/" * 2000 + b"x.png"
    body = name_record(0, name[:1000]) + name_record(1000, b"")
    blob = ltz(dense_codec.fingerprint, image_catalog(2, (8, 8, 1), body, names=True))
    with pytest.raises(FormatError, match="deep") as caught:
        dense_codec.decode(blob)
    assert len(str(caught.value)) < 200


def test_a_deflate_bomb_in_the_catalog_is_inflated_no_further_than_the_budget(dense_codec):
    blob = ltz(dense_codec.fingerprint, image_catalog(1, (8, 8, 1), bytes(64 << 20), deflated=True))
    budget = catalog.Budget.of(len(blob)).catalog_bytes
    assert budget < 36 << 20
    with pytest.raises(LimitError, match="catalog bytes"):  # the inflater's buffer and the bytes it gave
        _bounded(lambda: dense_codec.decode(blob), 2, 2 * (budget >> 20) + 4)


def test_the_encoder_refuses_a_catalog_its_decoder_would_refuse():
    names = [f"{'n' * 900}{i:05d}.png" for i in range(2000)]
    with pytest.raises(LimitError, match="name bytes"):
        catalog.check(catalog.Catalog(names, [(8, 8, 1)] * 2000), file_size=200)
    catalog.check(catalog.Catalog(names, [(8, 8, 1)] * 2000), file_size=10_000)


def test_a_payload_the_range_decoder_rejects_is_a_format_error():
    """constriction raises AssertionError on such payloads; a user must see our error.
    Which payloads it rejects depends on the tables, so this uses fixed ones rather than
    a trained model's (whose tables differ from machine to machine): about one random
    payload in 200 is rejected with these."""
    model = constriction.stream.model.Categorical(np.array([0.7, 0.2, 0.1]), perfect=False)
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(2000):
        try:
            entropy.reader(rng.bytes(int(rng.integers(1, 40)))).decode(model, 50)
        except FormatError as exc:
            rejected += "cannot be decoded" in str(exc)
    assert rejected > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(blob=st.data())
def test_crafted_image_files_raise_only_our_errors(dense_codec, blob):
    crafted = blob.draw(ltz_files(dense_codec.fingerprint))
    try:
        _bounded(lambda: dense_codec.decode_named(crafted), 3, 200)
    except LatentzipError:
        pass


@FAST
@given(version=st.sampled_from([1, 2]), data=st.data(), spare=st.integers(0, 1 << 16))
def test_crafted_catalogs_parse_within_budget_or_fail_with_our_error(version, data, spare):
    part = data.draw(catalogs(version=version))
    size = len(part) + spare
    try:
        found = catalog.unpack(part, size, version)
    except FormatError:
        return
    budget = catalog.Budget.of(size)
    assert len(found.names) == len(found.shapes) <= budget.images
    assert found.direct is None or len(found.direct) == len(found.shapes)
    assert all(catalog.name_problem(name) is None for name in found.names) or found.names == \
        catalog.default_names(len(found.shapes))


_plain = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")),
                 min_size=1, max_size=20).filter(lambda s: not s.startswith(".") and "/" not in s and "\\" not in s)


@FAST
@given(names=st.lists(st.lists(_plain, min_size=1, max_size=3).map("/".join), min_size=1, max_size=20))
def test_every_name_the_encoder_accepts_comes_back_unchanged(names):
    if any(catalog.name_problem(name) for name in names):
        return
    cat = catalog.Catalog(names, [(8, 8, 1)] * len(names))
    packed = catalog.pack(cat)
    assert catalog.unpack(packed, len(packed)) == cat


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=lzc_files(), cap=st.none() | st.integers(0, 200))
def test_crafted_byte_files_raise_only_our_errors_and_respect_the_cap(blob, cap):
    try:  # memory: the model a level needs (docs/format.md: at most 1,630 MiB), not what the file says
        out = _bounded(lambda: decompress(blob, max_length=cap), 10, 1700)
    except LatentzipError:
        return
    assert cap is None or len(out) <= cap


# --- the command line: one line, non-zero exit, no output ------------------------------


def _crafted_files(fingerprint: bytes) -> dict[str, bytes]:
    return {
        "bomb": ltz(fingerprint, image_catalog(1 << 24, (8, 8, 1))),
        "deep": ltz(fingerprint, image_catalog(1, (8, 8, 1), name_record(0, b"d/" * 500 + b"x"), names=True)),
        "escape": ltz(fingerprint, image_catalog(1, (8, 8, 1), name_record(0, b"\x1b[2J\nfake.png"), names=True)),
        "payload": ltz(fingerprint, image_catalog(3, (8, 8, 1)), b"\xff" * 21),
    }


@pytest.mark.parametrize("case", sorted(_crafted_files(b"")))
def test_crafted_image_file_on_the_command_line(tmp_path, dense_codec, model_file, case):
    blob = _crafted_files(dense_codec.fingerprint)[case]
    if case == "payload":
        with pytest.raises(FormatError, match="cannot be decoded"):
            dense_codec.decode(blob)
    path = tmp_path / "crafted.ltz"
    path.write_bytes(blob)
    proc = run_cli("decode", str(path), "-m", str(model_file), "-o", str(tmp_path / "out"))
    assert_clean_error(proc)
    assert b"\x1b" not in proc.stderr and len(proc.stderr) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.ltz"]
    assert path.read_bytes() == blob


def test_crafted_byte_file_on_the_command_line(tmp_path):
    blob = lzc_header(block_size=1 << 20) + block_record(1 << 20, 1, b"\0" * 8, 0)
    path = tmp_path / "crafted.lzc"
    path.write_bytes(blob)
    started = time.perf_counter()
    assert_clean_error(run_cli("decompress", str(path), "-o", str(tmp_path / "out")), "payload")
    assert time.perf_counter() - started < 30  # the process, not the 1 MiB a decoder would have run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.lzc"]


@pytest.mark.parametrize("segment_blocks", [0, 5, 1 << 40])
def test_byte_file_with_an_impossible_segment_is_refused(segment_blocks):
    """A segment is at most 4 MiB of blocks (rounded up): a larger one would have every
    thread hold more than the memory it is promised."""
    blob = lzc_header(block_size=1 << 20, segment_blocks=segment_blocks) + container.end_record(0, 0)
    with pytest.raises(FormatError, match="segment size"):
        decompress(blob)


# --- the lossless API's output cap -----------------------------------------------------


def test_max_length_refuses_before_producing_what_is_past_it():
    text = _text(10_000)
    c = Compressor(1, block_size=4096)
    blob = c.compress(text) + c.flush()
    assert decompress(blob, max_length=len(text)) == text
    with pytest.raises(LimitError, match="max_length=9999"):
        decompress(blob, max_length=len(text) - 1)
    restored: list[int] = []
    d = Decompressor(progress=restored.append, max_length=5000)
    with pytest.raises(LimitError):
        d.decompress(blob)
    assert sum(restored) <= 4096  # the second block was refused before it was decoded


# --- outputs ---------------------------------------------------------------------------


@pytest.fixture()
def nested(tmp_path, dense_codec, digits_test) -> Path:
    """A file of four images, two of them in a subdirectory."""
    names = ["a.png", "b.png", "sub/c.png", "sub/d.png"]
    path = tmp_path / "nested.ltz"
    path.write_bytes(dense_codec.encode(digits_test.images[:4], names))
    return path


def _decode(path: Path, model_file: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return run_cli("decode", str(path), "-m", str(model_file), "-o", str(out), *flags)


def test_decode_force_replaces_nothing_unless_every_image_can_be_written(tmp_path, nested, model_file):
    out = tmp_path / "out"
    (out / "sub" / "d.png").mkdir(parents=True)
    (out / "a.png").write_bytes(b"old a")
    proc = _decode(nested, model_file, out, "-f")
    assert_clean_error(proc, "d.png", "is a directory")
    assert (out / "a.png").read_bytes() == b"old a"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.png", "sub", "sub/d.png"]


def test_decode_never_writes_through_a_symlink_inside_the_output(tmp_path, nested, model_file):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    for flags in ((), ("-f",)):
        assert_clean_error(_decode(nested, model_file, out, *flags), "symbolic link")
        assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["sub"]


def test_a_failure_while_moving_into_place_puts_back_what_was_replaced(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "1").write_bytes(b"old 1")
    real, calls = fsio.place, []

    def failing(*args, **kwargs):  # the third file cannot be moved (a fault, injected)
        calls.append(args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(fsio, "place", failing)
    with pytest.raises(LatentzipError, match="3: No space"):
        fsio.write_tree(out, {"1": b"new 1", "new/2": b"new 2", "3": b"new 3"}.items(), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["1"] and (out / "1").read_bytes() == b"old 1"


def test_no_clobber_is_race_free(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(LatentzipError, match="already exists"):
        with fsio.atomic_writer(target, overwrite=False) as handle:
            handle.write(b"ours")
            target.write_bytes(b"theirs")  # another process gets there first
    assert target.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_two_compressions_to_one_output_never_both_succeed(tmp_path):
    sources = [tmp_path / f"in{i}" for i in range(2)]
    for i, source in enumerate(sources):
        source.write_bytes(_text(30_000 + i))
    out = tmp_path / "same.lzc"
    procs = [subprocess.Popen([sys.executable, "-m", "latentzip", "compress", "-1", str(s), "-o", str(out)],
                              stderr=subprocess.PIPE) for s in sources]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    assert any(b"already exists" in err for _, err in results)
    assert decompress(out.read_bytes()) in [s.read_bytes() for s in sources]


def _wait_for(predicate, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _cpu_seconds(pid: int) -> tuple[float, str]:
    """CPU time a process has used (user + system) and its state, from /proc; a zombie
    still shows its totals."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU times from /proc")
@pytest.mark.parametrize(("signum", "level"), [(signal.SIGTERM, "-1"), (signal.SIGHUP, "-6"), (signal.SIGINT, "-1")])
def test_signals_stop_within_a_second_and_clean_up(tmp_path, signum, level):
    """Level 1 is stopped while it codes 2 MiB blocks, level 6 while it learns the primer.
    Time is counted in CPU seconds, which a busy machine does not stretch."""
    decompress(compress(_text(3000), level=1))  # the compiled code is cached before the clock runs
    Model(MIXING_LEVELS[6]).prime(_text(100))
    source = tmp_path / "in.txt"
    # Level 1 codes text that repeats itself at many MB/s: random bytes keep it at work.
    source.write_bytes(np.random.default_rng(0).integers(0, 256, 16 << 20, dtype=np.uint8).tobytes())
    out = tmp_path / "in.txt.lzc"
    proc = subprocess.Popen([sys.executable, "-m", "latentzip", "compress", level, "--primer", "--block-size",
                             str(2 << 20), str(source)], stderr=subprocess.PIPE)
    _wait_for(lambda: _cpu_seconds(proc.pid)[0] >= 4)  # past start-up, into the compiled loop
    used = _cpu_seconds(proc.pid)[0]
    proc.send_signal(signum)
    _wait_for(lambda: _cpu_seconds(proc.pid)[1] == "Z", seconds=30)
    assert _cpu_seconds(proc.pid)[0] - used < 1.0  # the rest of a call, the clean-up, and exiting
    assert proc.wait() == 128 + signum
    err = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert err.strip() == f"latentzip: interrupted ({signal.Signals(signum).name})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"] and not out.exists()


class _Panic(BaseException):
    """What PyO3 raises when a signal's exception meets a Rust callback (not an Exception)."""


def test_a_signal_a_library_turned_into_a_panic_is_still_an_interruption(monkeypatch, capsys):
    from latentzip import cli

    def command(args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except cli.Interrupted as exc:
            raise _Panic("Failed to access NumPy array API capsule") from exc
        return 0

    monkeypatch.setattr(cli.image, "_models", command)
    assert cli.main(["models"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "latentzip: interrupted (SIGTERM)"


def test_an_interrupted_decode_leaves_no_staging_directory(tmp_path, dense_codec, digits, model_file):
    path = tmp_path / "many.ltz"
    images = np.concatenate([digits.images] * 30)
    path.write_bytes(dense_codec.encode(images))
    proc = subprocess.Popen([sys.executable, "-m", "latentzip", "decode", str(path), "-m", str(model_file), "-o",
                             str(tmp_path / "out")], stderr=subprocess.PIPE)
    _wait_for(lambda: any(p.name.endswith(".part") for p in tmp_path.iterdir()) or proc.poll() is not None)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.ltz"]


# --- small ones --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [["--block-size", "0"], ["--block-size", "-5"], ["--block-size=-5"],
                                   ["--block-size", "many"]])
def test_bad_block_sizes_are_refused_by_name(tmp_path, value):
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    assert_clean_error(run_cli("compress", *value, str(source)), "block-size")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("verb", ["compress", "decompress", "decode", "encode"])
def test_a_fifo_is_refused_not_waited_on(tmp_path, model_file, verb):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    args = ("encode", "-m", str(model_file)) if verb == "encode" else (verb,)
    assert_clean_error(run_cli(*args, str(fifo), "-o", str(tmp_path / "out")), "not a regular file")


@pytest.mark.parametrize("length", [10, 5000])
def test_names_in_messages_are_escaped_and_short(tmp_path, model_file, length):
    name = "evil\x1b[31m\nname" + "x" * length + ".png"
    proc = run_cli("encode", "-m", str(model_file), str(tmp_path / name), "-o", str(tmp_path / "x.ltz"))
    assert_clean_error(proc, "\\x1b[31m\\n")
    assert b"\x1b" not in proc.stderr and len(proc.stderr) < 1200


def test_a_dotfile_is_refused_when_encoding(tmp_path, model_file, digits_test):
    hidden = tmp_path / ".hidden.png"
    data.write_png(hidden, digits_test.images[0])
    assert_clean_error(run_cli("encode", "-m", str(model_file), str(hidden), "-o", str(tmp_path / "x.ltz")),
                       "starts with '.'")


def test_a_mix_of_grey_and_rgb_is_named_as_such(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    data.write_png(folder / "grey.png", np.zeros((8, 8), np.uint8))
    data.write_png(folder / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    assert_clean_error(run_cli("train", "--data", str(folder), "--arch", "dense", "-o", str(tmp_path / "m.model")),
                       "grey and some RGB")
    assert data.mismatch([np.zeros((8, 8, 1)), np.zeros((9, 8, 1))]) == "their sizes differ (8x8, 9x8)"


def test_an_opaque_alpha_channel_is_dropped_and_real_transparency_coded_beside_a_model_without_alpha():
    cfg = NetConfig(arch="conv", latent=4, channels=3, hidden=(8,), levels=1)
    codec = ImageCodec.from_model(Autoencoder(cfg).eval())
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((2, 8, 8, 1), 255, np.uint8)], axis=-1)
    assert codec.encode(rgba) == codec.encode(rgb)
    assert np.array_equal(data.load(rgba).images, rgb)
    rgba[1, 3, 3, 3] = 0
    opaque, transparent = codec.decode(codec.encode(rgba))  # alpha beside the network, exactly
    assert opaque.shape == (8, 8, 3) and transparent.shape == (8, 8, 4)
    assert np.array_equal(transparent[..., 3], rgba[1, ..., 3])


def test_reading_stdin_stops_at_the_limit():
    """read_bytes refuses more than its limit from a pipe on stdin, without reading it all."""
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, bytes(4096)), os.close(write_end)))
    writer.start()
    proc = subprocess.run([sys.executable, "-c", "from latentzip import fsio; fsio.read_bytes('-', 100)"],
                          stdin=read_end, capture_output=True, timeout=120)
    os.close(read_end)
    writer.join()
    assert b"LimitError" in proc.stderr and b"more than 100 bytes" in proc.stderr


@pytest.mark.parametrize("args", [("encode", "-m", "{dir}", "{png}", "-o", "{out}"),
                                  ("train", "--data", "{pngs}", "--start", "{dir}", "--epochs", "1", "-o", "{out}"),
                                  ("decode", "{dir}", "-o", "{out}")])
def test_a_directory_where_a_file_belongs_is_a_clean_error(tmp_path, args):
    """A directory given as a model or a file to decode (Python refuses to make a file
    object of one, before any check of ours could run)."""
    from PIL import Image

    folder, pngs = tmp_path / "folder", tmp_path / "pngs"
    folder.mkdir()
    pngs.mkdir()
    for k in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * k, np.uint8)).save(pngs / f"{k}.png")
    proc = run_cli(*(a.format(dir=folder, out=tmp_path / "out", png=pngs / "0.png", pngs=pngs) for a in args))
    assert_clean_error(proc, f"{folder} is a directory, not a file")
    assert not (tmp_path / "out").exists()
