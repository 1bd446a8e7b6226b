"""Lossless codec: byte-exact round trips, and clean failures on damaged files.

Round trips through the command line compress and decompress in separate processes,
so nothing but the file carries information from one to the other.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from latentzip import container, lossless
from latentzip.errors import FormatError
from latentzip.lossless import (PREDICTOR_REVISION, SEGMENT_SIZE, Compressor, Decompressor, compress, decompress,
                                primer)
from latentzip.lossless.predict import LEVELS as MIXING_LEVELS, Model

FAST = 1  # the fastest level keeps the suite quick; the default level has its own test
DATA = Path(__file__).parent / "data"  # files written by earlier revisions, and what they hold


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentzip", *args], input=stdin, capture_output=True, timeout=300)


def _text(n: int) -> bytes:
    words = b"the quick brown fox jumps over a lazy dog while latentzip codes every bit".split()
    rnd = random.Random(n)
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + (b"\n" if rnd.random() < 0.1 else b" ")
    return bytes(out[:n])


SAMPLES = {
    "empty": b"",
    "one": b"\x00",
    "all256": bytes(range(256)),
    "random": random.Random(1).randbytes(3000),
    "repetitive": b"abcabcabd" * 2000,
    "zeros": bytes(10000),
    "text": _text(20000),
    "binary": bytes((i * i + (i >> 3)) & 0xFF for i in range(7000)),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_api(name: str) -> None:
    data = SAMPLES[name]
    assert decompress(compress(data, level=FAST)) == data


@pytest.mark.parametrize("n", [16383, 16384, 16385, 32769])
def test_round_trip_around_segment_boundaries(n: int) -> None:
    data = _text(n)
    assert decompress(compress(data, level=4)) == data  # the first level that codes lock-step segments


@pytest.mark.parametrize("level", [1, 2, 3, 4, 6])
def test_long_repeats_runs_and_misses_replay_across_blocks(level: int) -> None:
    """In a long repeat every level codes one decision a byte; that path must replay
    exactly where a repeat breaks off, across block boundaries, after a stored block and
    (levels 4-5, blocks of one MiB) in every lock-step segment of a block."""
    chunk = random.Random(level).randbytes(3000)
    changed = bytearray(chunk)
    changed[1500] ^= 1
    data = (_text(5000) + chunk + chunk + bytes(changed) + bytes(20000) + random.Random(7).randbytes(20000)
            + chunk + _text(3000))
    c = Compressor(level=level, block_size=8192)
    blob = c.compress(data) + c.flush()
    assert c.stored_blocks >= 1
    assert decompress(blob) == data
    assert decompress(compress(data, level), threads=2) == data
    zeros = bytes(1 << 20)  # one decision a byte: far fewer payload bytes per byte than 8 decisions allow
    blob = compress(zeros, level)
    assert len(blob) < 200 and decompress(blob) == zeros


def test_round_trip_default_level_primed_by_size() -> None:
    """At the default level an input of 64 KiB or more is primed unasked, even in smaller blocks."""
    data = _text(50000) + random.Random(2).randbytes(2000) + _text(20000)
    c = Compressor(block_size=16384)
    blob = c.compress(data) + c.flush()
    assert c.primed and c.blocks == 5 and _primer_field(blob) == primer.PRIMER_ID
    assert len(blob) < len(data) // 3
    assert decompress(blob) == data


def test_runs_and_repeats_are_not_primed_unasked() -> None:
    """Learning the primer would take most of the time such input takes to code."""
    c = Compressor()
    blob = c.compress(bytes(1 << 20)) + c.compress(_text(1000) * 100) + c.flush()
    assert not c.primed and _primer_field(blob) == 0 and len(blob) < 1000


def test_primed_segments_start_alike_on_reused_models(monkeypatch) -> None:
    """Each primed segment but the last starts from a copy of the primed model written
    over the model of a segment already done: equal segments still give equal records."""
    monkeypatch.setattr(lossless, "SEGMENT_SIZE", 8192)  # two blocks of 4 KiB

    def packed(data: bytes) -> bytes:
        c = Compressor(6, block_size=4096, primer=True, threads=1)
        return c.compress(data) + c.flush()

    data = _text(8192) * 4  # the first segment's model a fresh copy, the next two copies over it, the last the primed one
    blob = packed(data)
    _, used = container.parse_bytes_header(blob)
    records = blob[used : -len(container.end_record(len(data), zlib.crc32(data)))]
    assert records == records[: len(records) // 4] * 4
    assert decompress(blob, threads=1) == data


class _Rang(Exception):
    pass


def _ring(signum: int, frame: object) -> None:
    raise _Rang


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs interval timers")
def test_copying_a_large_model_gives_way_to_a_signal() -> None:
    """A primed model (1.5 GB at level 6) is copied for every segment; one NumPy call over
    all of it would hold off Ctrl-C for seconds while its pages fault in."""
    model = Model(MIXING_LEVELS[6])
    previous = signal.signal(signal.SIGALRM, _ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        with pytest.raises(_Rang):
            model.copy()
        assert time.monotonic() - started < 0.5  # a slice, not the whole copy (2-7 s on 2 cores)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _primer_field(blob: bytes) -> int:
    header = container.parse_bytes_header(bytearray(blob))
    assert header is not None
    reader = container.Reader(header[0], what="header")
    return [reader.varint() for _ in range(4)][3]


ENGLISH = (b"When the committee met again in the spring, most of the members agreed that the old bridge "
           b"could not be repaired for much longer. The river had risen twice during the winter, and each "
           b"time the water carried away more of the stone that held the eastern pier in place. A new bridge "
           b"would cost more than the town could raise in one year, so the treasurer proposed that the work "
           b"be divided into three parts, paid for over three years, and that a small toll be charged to "
           b"carts and carriages until the debt was cleared. Several members objected that farmers, who "
           b"crossed the river every market day, would bear most of the burden, while merchants in the town "
           b"would pay almost nothing. After a long discussion it was decided to ask the county for help.\n")


def test_primer_shrinks_a_small_text_and_replays() -> None:
    data = ENGLISH
    plain, primed = compress(data, level=6), compress(data, level=6, primer=True)
    assert _primer_field(plain) == 0 and _primer_field(primed) == primer.PRIMER_ID
    assert len(primed) < 0.8 * len(plain)
    assert decompress(primed) == data


def test_primed_strongest_level_replays() -> None:
    """Level 9 (another window and match length than the level the prior was made at) primes and replays."""
    data = ENGLISH * 3
    assert decompress(compress(data, level=9, primer=True)) == data


def test_cli_primer_flag_in_separate_processes() -> None:
    r = _cli("compress", "--primer", "--stats", "-", stdin=ENGLISH)
    assert r.returncode == 0 and b"(primed)" in r.stderr
    r2 = _cli("decompress", "-", stdin=r.stdout)
    assert r2.returncode == 0 and r2.stdout == ENGLISH


def test_fast_levels_are_never_primed() -> None:
    c = Compressor(level=5, primer=True)
    blob = c.compress(_text(2000)) + c.flush()
    assert not c.primed and _primer_field(blob) == 0


def test_unknown_primer_is_refused() -> None:
    fields = b"".join(container.put_varint(v) for v in (PREDICTOR_REVISION, 6, 4096, primer.PRIMER_ID + 1, 1024))
    with pytest.raises(FormatError, match="unknown primer"):
        decompress(container.bytes_header(fields) + container.end_record(0, 0))


def test_prior_for_another_predictor_is_refused() -> None:
    with pytest.raises(FormatError, match="made for another predictor"):
        primer.prior(PREDICTOR_REVISION + 1)


@pytest.mark.parametrize("attr, what", [("_PATH", "primer"), ("_PRIOR", "prior")])
def test_damaged_primer_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attr: str, what: str) -> None:
    """A broken installation fails with the file's name, through the public API, before any output."""
    bad = tmp_path / f"{what}.xz"
    bad.write_bytes(b"not xz")
    monkeypatch.setattr(primer, attr, bad)
    primer.text.cache_clear()
    primer.prior.cache_clear()
    try:
        with pytest.raises(FormatError, match=f"{what}.*damaged.*reinstall"):
            compress(b"abc", level=6, primer=True)
    finally:
        primer.text.cache_clear()
        primer.prior.cache_clear()


@pytest.mark.parametrize("level", [5, 9])
def test_exact_replay_across_levels_and_blocks(level: int) -> None:
    """Markup, repeats and indirect/run state carried across several blocks replay exactly."""
    data = (b"<page><title>[[Fox]]</title>{{cite|x}}\n" + _text(9000)) * 3 + random.Random(level).randbytes(500)
    c = Compressor(level=level, block_size=8192)
    blob = c.compress(data) + c.flush()
    assert c.blocks == -(-len(data) // 8192)
    assert decompress(blob) == data


def test_streaming_objects_match_one_shot() -> None:
    data = _text(30000)
    c = Compressor(level=FAST, block_size=4096)
    blob = b"".join(c.compress(data[i : i + 777]) for i in range(0, len(data), 777)) + c.flush()
    d = Decompressor()
    out = b"".join(d.decompress(blob[i : i + 1000]) for i in range(0, len(blob), 1000))
    assert d.eof and out == data


@pytest.mark.parametrize("n", [0, 4096, 2 * 4096 + 1])
def test_cli_round_trip_in_separate_processes(tmp_path: Path, n: int) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(_text(n // 2) + random.Random(n).randbytes(n - n // 2))
    r = _cli("compress", "-1", "--block-size", "4096", str(src))
    assert r.returncode == 0, r.stderr
    assert src.exists() and (tmp_path / "in.bin.lzc").exists()
    out = tmp_path / "out.bin"
    r = _cli("decompress", str(tmp_path / "in.bin.lzc"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == src.read_bytes()


def test_cli_pipes_and_stats(tmp_path: Path) -> None:
    data = _text(12000)
    r = _cli("compress", "-1", "--stats", "-", stdin=data)
    assert r.returncode == 0 and b"bpb" in r.stderr and b"xz" in r.stderr
    r2 = _cli("decompress", "-", stdin=r.stdout)
    assert r2.returncode == 0 and r2.stdout == data


def test_cli_refuses_to_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    (tmp_path / "a.txt.lzc").write_bytes(b"precious")
    r = _cli("compress", str(src))
    assert r.returncode == 1 and b"-f" in r.stderr
    assert (tmp_path / "a.txt.lzc").read_bytes() == b"precious"
    assert _cli("compress", "-f", str(src)).returncode == 0
    assert decompress((tmp_path / "a.txt.lzc").read_bytes()) == b"hello"


def _assert_clean_failure(r: subprocess.CompletedProcess, out: Path, words: bytes) -> None:
    assert r.returncode == 1
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1
    assert words in r.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]


def _blob(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "x.lzc"
    blob = compress(_text(6000), level=FAST)
    path.write_bytes(blob)
    return path, blob


def test_corrupted_file_fails_cleanly(tmp_path: Path) -> None:
    path, blob = _blob(tmp_path)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x10
    path.write_bytes(bytes(bad))
    out = tmp_path / "x"
    _assert_clean_failure(_cli("decompress", str(path), "-o", str(out)), out, b"corrupt")


def test_truncated_file_fails_cleanly(tmp_path: Path) -> None:
    path, blob = _blob(tmp_path)
    path.write_bytes(blob[:-1])
    out = tmp_path / "x"
    _assert_clean_failure(_cli("decompress", str(path), "-o", str(out)), out, b"truncated")


@pytest.mark.parametrize("keep", [0, 3, 5, 20, 40, -9])
def test_every_truncation_is_a_format_error(keep: int) -> None:
    blob = compress(_text(3000), level=FAST)
    with pytest.raises(FormatError):
        decompress(blob[:keep])


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pics.ltz"
    path.write_bytes(container.pack(container.Kind.IMAGES, b"{}", b"payload"))
    out = tmp_path / "x"
    _assert_clean_failure(_cli("decompress", str(path), "-o", str(out)), out, b"images")


def test_checksum_catches_a_flipped_payload_bit() -> None:
    """Flip a payload bit and repair the record checksum: only the restored-data check remains."""
    blob = bytearray(compress(_text(5000), level=FAST))
    header = container.parse_bytes_header(blob)
    assert header is not None
    start = header[1]
    record, end = container.parse_record(blob, start, 1 << 20, 1 << 21)
    payload_at = end - 8 - len(record.payload)
    blob[payload_at + len(record.payload) // 2] ^= 0x01
    crc = container.crc32(bytes(blob[start : end - 4]))
    blob[end - 4 : end] = crc.to_bytes(4, "little")
    with pytest.raises(FormatError, match="checksum|cannot be decoded"):
        decompress(bytes(blob))


def test_incompressible_input_is_stored_and_says_so(tmp_path: Path) -> None:
    src = tmp_path / "noise"
    src.write_bytes(os.urandom(20000))
    r = _cli("compress", "-1", str(src))
    assert r.returncode == 0 and b"stored" in r.stderr
    blob = (tmp_path / "noise.lzc").read_bytes()
    assert len(blob) < 20000 + 64
    assert decompress(blob) == src.read_bytes()


def test_older_predictor_revision_is_refused_by_name() -> None:
    """A file from an earlier predictor cannot be replayed, so it must fail loudly, not decode wrongly."""
    fields = container.put_varint(3) + container.put_varint(FAST) + container.put_varint(4096)
    blob = container.bytes_header(fields) + container.end_record(0, 0)
    with pytest.raises(FormatError, match="revision 3"):
        decompress(blob)


def _as_revision_5(blob: bytes) -> bytes:
    """`blob` with its header rewritten as revision 5 wrote them: no segment field."""
    fields, used = container.parse_bytes_header(blob)
    reader = container.Reader(fields, what="header")
    revision, level, block_size, primer_id, segment_blocks = (reader.varint() for _ in range(5))
    assert segment_blocks == -(-SEGMENT_SIZE // block_size)
    return container.bytes_header(b"".join(container.put_varint(v) for v in (5, level, block_size, primer_id))) \
        + blob[used:]


def test_revision_5_files_decode_with_one_model_for_the_stream() -> None:
    """Before segments, one model ran on across blocks; within one segment that is what later
    revisions write too, so a file of one segment whose header is rewritten is a revision-5
    file (at level 4 a file of revision 6, whose coder revision 5 shared)."""
    text = primer.text()[:40_000]
    c = Compressor(level=FAST, block_size=8192)
    blob = c.compress(text) + c.flush()
    fields, _ = container.parse_bytes_header(blob)
    assert fields == b"".join(container.put_varint(v) for v in (PREDICTOR_REVISION, FAST, 8192, 0,
                                                               -(-SEGMENT_SIZE // 8192)))
    assert decompress(_as_revision_5(blob)) == text
    old = _as_revision_5((DATA / "revision6-level4.lzc").read_bytes())
    assert decompress(old) == (DATA / "revision6.txt").read_bytes()


def test_segments_restart_the_model_and_any_thread_count_reads_any(monkeypatch) -> None:
    monkeypatch.setattr(lossless, "SEGMENT_SIZE", 16384)  # four blocks of 4 KiB

    def packed(data: bytes, threads: int) -> bytes:
        c = Compressor(FAST, block_size=4096, threads=threads)
        return c.compress(data) + c.flush()

    part = primer.text()[:16384]
    text = part + part + primer.text()[16384:40_000]
    blobs = {threads: packed(text, threads) for threads in (1, 3)}
    assert blobs[1] == blobs[3]  # the output does not depend on the thread count
    one = packed(part, 1)
    _, used = container.parse_bytes_header(one)
    alone = one[used : -len(container.end_record(len(part), zlib.crc32(part)))]
    assert alone * 2 in blobs[1]  # each segment starts from the same state: equal segments, equal records
    for threads in (1, 2, 4):
        d = lossless.Decompressor(threads=threads)
        assert d.decompress(blobs[1]) == text and d.eof


def test_layout_cuts_an_input_of_known_length_into_equal_segments() -> None:
    mib = 1 << 20
    assert lossless.layout(None) == (mib, 4)  # not known: 4 MiB segments of 1 MiB blocks
    assert lossless.layout(4 * mib) == (mib, 4)  # one segment: as when not known
    assert lossless.layout(8_000_000) == (1_000_000, 4)  # not 4 MiB and 3.8 MB
    assert lossless.layout(9 * mib) == (mib, 3)  # three segments of 3 MiB
    assert lossless.layout(8_000_000, 4096) == (4096, 977)  # blocks asked for: segments of whole blocks
    for size in (4 * mib + 1, 8_000_000, 100_000_003):
        block, blocks = lossless.layout(size)
        segment = block * blocks
        segments = -(-size // segment)
        assert block <= lossless.BLOCK_SIZE and segment <= lossless.SEGMENT_SIZE
        assert segments == -(-size // lossless.SEGMENT_SIZE)  # no more restarts than 4 MiB segments make
        assert size - (segments - 1) * segment >= segment - segments * (blocks + 1)  # the last is all but full


def test_a_known_length_gives_equal_segments_and_both_files_decode(monkeypatch) -> None:
    monkeypatch.setattr(lossless, "SEGMENT_SIZE", 16384)
    monkeypatch.setattr(lossless, "BLOCK_SIZE", 4096)
    part = primer.text()[:12_000]
    text = part * 2  # 24,000 bytes: two segments of 12,000 (three blocks of 4,000), not 16,384 and 7,616
    blob = compress(text, level=FAST, threads=1)
    fields, used = container.parse_bytes_header(blob)
    assert fields == b"".join(container.put_varint(v) for v in (PREDICTOR_REVISION, FAST, 4000, 0, 3))
    records = blob[used : -len(container.end_record(len(text), zlib.crc32(text)))]
    assert records == records[: len(records) // 2] * 2  # equal segments from the same start: equal records
    assert compress(text, level=FAST, threads=2) == blob
    c = Compressor(FAST, threads=1)  # the same bytes with no length given: segments of SEGMENT_SIZE
    streamed = c.compress(text) + c.flush()
    assert streamed != blob
    for threads in (1, 2, 3):
        assert decompress(blob, threads=threads) == text == decompress(streamed, threads=threads)


@pytest.mark.parametrize("level", [4, 6])
def test_revision_6_files_of_the_mixing_levels_still_decode(level: int) -> None:
    """Before revision 7, levels 4-9 coded with constriction's range coder; files written
    then (level 4: two lock-step segments in a block; level 6: primed, three blocks) decode
    with any thread count."""
    blob = (DATA / f"revision6-level{level}.lzc").read_bytes()
    assert container.parse_bytes_header(blob)[0][0] == 6
    for threads in (1, 2):
        assert decompress(blob, threads=threads) == (DATA / "revision6.txt").read_bytes()


def test_revision_4_files_still_decode_at_the_levels_whose_predictor_is_unchanged() -> None:
    fields = b"".join(container.put_varint(v) for v in (4, 4, 4096, 0))
    blob = container.bytes_header(fields) + container.end_record(0, 0)
    assert decompress(blob) == b""


@pytest.mark.parametrize("level", [1, 3, 4, 9])
def test_worker_memory_is_what_a_model_holds(level: int) -> None:
    """The memory stated per thread is computed, not measured: it must match a real model."""
    model = lossless._new_model(level, False)
    arrays = vars(model.model if isinstance(model, lossless.MixingCoder) else model).values()
    owned = [a for a in arrays if isinstance(a, np.ndarray) and a.base is None]  # views share their memory
    assert lossless.worker_memory(level) == sum(a.nbytes for a in owned) + 3 * lossless.SEGMENT_SIZE


def test_threads_are_capped_by_memory() -> None:
    per_thread = lossless.worker_memory(9)
    assert lossless.worker_memory(1) < per_thread
    assert lossless.threads_for(9, 16, memory=2 * per_thread + 1) == 2
    assert lossless.threads_for(9, 16, memory=1) == 1  # never fewer than one
    assert lossless.threads_for(1, 3, memory=None) <= 3
    with pytest.raises(ValueError, match="threads"):
        compress(b"abc", FAST, threads=-1)


def test_thread_flags(tmp_path: Path) -> None:
    src = tmp_path / "text"
    src.write_bytes(primer.text()[:30_000])
    outputs = []
    for flags in (["-T", "1"], ["--threads=2", "--memory", "50%"]):
        out = tmp_path / f"out{len(outputs)}.lzc"
        r = _cli("compress", "-1", *flags, str(src), "-o", str(out))
        assert r.returncode == 0, r.stderr
        outputs.append(out.read_bytes())
        r = _cli("decompress", *flags, str(out), "-o", str(tmp_path / f"back{len(outputs)}"))
        assert r.returncode == 0 and (tmp_path / f"back{len(outputs)}").read_bytes() == src.read_bytes()
    assert outputs[0] == outputs[1]
    for flags, words in ((["-T", "-2"], b"0 (one per core) or more"), (["--memory", "lots"], b"memory size"),
                         (["--memory", "0"], b"memory size")):
        r = _cli("compress", *flags, str(src), "-o", str(tmp_path / "bad.lzc"))
        assert r.returncode == 2 and words in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
        assert not (tmp_path / "bad.lzc").exists()


def test_a_compress_command_loads_neither_the_image_stack_nor_scipy_linalg(tmp_path: Path) -> None:
    """Start-up is most of a fast level's time on small files: `compress` and
    `decompress` must not import Pillow, torch or scipy.linalg (numba's BLAS probe, which
    latentzip.jit skips), and scipy.linalg must still import normally afterwards."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"start-up costs more than coding this\n" * 200)
    script = (
        "import sys\n"
        "from latentzip.cli import main\n"
        f"assert main(['compress', '-1', '-T', '1', {str(src)!r}]) == 0\n"
        f"assert main(['decompress', '-T', '1', '-o', {str(tmp_path / 'out.txt')!r}, {str(src) + '.lzc'!r}]) == 0\n"
        "loaded = [m for m in ('PIL', 'torch', 'scipy.linalg') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import scipy.linalg\n"
        "assert scipy.linalg.svd\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "out.txt").read_bytes() == src.read_bytes()
