"""A learned peer: CompressAI's bmshj2018 models against latentzip, trained for the same time
on the same photographs, then coding the same test photographs one file each.

    python bench/learned_peer.py [--minutes 15] [--lmbdas 0.0483 0.18 0.5 1.5]
                                 [--architecture hyperprior] [--venv DIR] [--quick]
    python bench/learned_peer.py --rescore     # the comparison again, from the JSON's curves

CompressAI is not a dependency of latentzip: it pins numpy below 2 and wants torchvision
and torch-geometric, none of which latentzip needs. The benchmark installs it, with
torch 2.13.0, into a throwaway venv of its own (--venv; built on first use and reused)
and gives it a small torchvision stand-in: CompressAI imports torchvision.transforms
only to list transform names for its registry, which coding and training never read.
bench/compressai_worker.py does CompressAI's part in that venv.

Training: scripts/train_photos.py's training photographs, cut into its pieces. CompressAI
trains one network per lmbda (Ballé et al. 2018, N=128, M=192, from scratch), each for
--minutes; latentzip trains its whole ladder in one run of --minutes, from the block KLT
as the shipped presets began (scripts/train_photos.py's settings), so the peer gets
as many minutes per rate point as latentzip gets for all eight. Both use every core.

Test photographs: bench/photos.py's (the five sporco photographs and the photographs
train_photos holds out). Every codec writes one real file per photograph, headers
included (CompressAI's: height, width and each string behind its 4-byte length); the
shipped photo:* presets (hours of training) and WebP (method 6) are measured in the same
run as anchors. BD-rates (common.bd_rate) compare each codec with each over the PSNR
range both cover, and over 30-40 dB where both reach it; BD-PSNR (common.bd_psnr) over
the rates both cover, for curves whose PSNR ranges barely meet.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from latentzip import metrics
from latentzip.image.codec import ImageCodec
from latentzip.image.train import EpochStats, train

import common
import photos
from common import bd_psnr, bd_rate, frontier

sys.path.insert(0, str(common.REPO / "scripts"))
import train_photos

SCRIPT = "bench/learned_peer.py"
WORKER = common.REPO / "bench" / "compressai_worker.py"
VENV_PACKAGES = ("torch==2.13.0", "scipy", "einops", "pytorch-msssim", "tqdm", "pillow", "typing-extensions",
                 "requests", "pandas", "torch-geometric")
COMPRESSAI = "compressai==1.2.8"  # installed without its dependencies: torchvision is stood in for
LMBDAS = (0.0483, 0.18, 0.5, 1.5)  # CompressAI's qualities 6 and 8, and two above: minutes reach low PSNRs
WEBP = "webp"
SHIPPED = "latentzip presets (shipped)"
PSNR_RANGE = photos.PSNR_RANGE


def peer_venv(folder: Path) -> Path:
    """The python of a venv holding CompressAI and torch 2.13.0, made in `folder` if it is
    not there yet (pip's output goes to stderr)."""
    python = folder / "bin" / "python"
    ready = folder / "latentzip-bench-ready"
    wanted = "\n".join((*VENV_PACKAGES, COMPRESSAI))
    if ready.exists() and ready.read_text() == wanted:
        return python
    print(f"installing CompressAI into {folder} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *VENV_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", COMPRESSAI], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stand_in = Path(site) / "torchvision"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "__init__.py").write_text('"""Stand-in: CompressAI only lists torchvision.transforms\' names."""\n')
    (stand_in / "transforms.py").write_text("")
    subprocess.run([str(python), "-c", "import compressai.models"], check=True)
    ready.write_text(wanted)
    return python


def worker(python: Path, *args: str, desc: str) -> list[dict[str, Any]]:
    """Run bench/compressai_worker.py under the peer's venv; its JSON lines, each shown as it comes."""
    lines = []
    with subprocess.Popen([str(python), str(WORKER), *args], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(json.loads(line))
            print(f"{desc}: {line.strip()}", file=sys.stderr)
    if process.returncode:
        raise SystemExit(f"{desc}: CompressAI's worker failed (exit status {process.returncode})")
    return lines


def scored(coded: list[dict[str, Any]], folder: Path, names: dict[str, str],
           test: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The worker's files as photos.measure reports a codec's: bytes, PSNR, MS-SSIM, seconds."""
    out = {}
    for row in coded:
        name = names[row["photo"]]
        decoded = np.asarray(Image.open(folder / f"{row['photo']}.png").convert("RGB"))
        out[name] = {"bytes": row["bytes"], "psnr": metrics.mean_psnr([test[name]], [decoded]),
                     "msssim": photos.msssim(test[name], decoded), "encode_s": row["encode_s"],
                     "decode_s": row["decode_s"]}
    return out


def compressai_runs(python: Path, pieces: list[np.ndarray], test: dict[str, np.ndarray], args: argparse.Namespace,
                    temp: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Train CompressAI's network at each lmbda, code the test photographs with each:
    (measurements by setting, each training run's totals with its curve)."""
    (temp / "pieces").mkdir()
    (temp / "photos").mkdir()
    for i, piece in enumerate(pieces):
        Image.fromarray(piece).save(temp / "pieces" / f"{i:05d}.png", compress_level=1)
    names = {f"{i:03d}": name for i, name in enumerate(test)}
    for stem, name in names.items():
        Image.fromarray(test[name]).save(temp / "photos" / f"{stem}.png", compress_level=1)
    measured, runs = {}, []
    for lmbda in args.lmbdas:
        model, coded = temp / f"{lmbda}.pt", temp / f"coded-{lmbda}"
        log = worker(python, "train", "--pieces", str(temp / "pieces"), "--architecture", args.architecture,
                     "--lmbda", str(lmbda), "--minutes", str(args.minutes), "--out", str(model),
                     desc=f"CompressAI {args.architecture}, lmbda {lmbda}")
        runs.append({**log[-1], "curve": log[:-1]})
        rows = worker(python, "code", "--model", str(model), "--photos", str(temp / "photos"), "--out", str(coded),
                      desc=f"coding, lmbda {lmbda}")
        measured[f"lmbda {lmbda}"] = scored(rows, coded, names, test)
    return measured, runs


def latentzip_run(pieces: list[np.ndarray], minutes: float) -> tuple[ImageCodec, list[dict[str, Any]]]:
    """latentzip's ladder trained from the block KLT for `minutes`, as train_photos starts."""
    history: list[dict[str, Any]] = []

    def on_epoch(stats: EpochStats) -> None:
        history.append(asdict(stats))
        print(f"latentzip epoch {stats.epoch}: {stats.seconds:.0f} s, validation {stats.val_psnr:.2f} dB "
              f"at {stats.val_bpp:.3f} bpp", file=sys.stderr)

    return train(pieces, train_photos.config(minutes), progress=False, on_epoch=on_epoch).codec, history


def compare(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every codec against each other: BD-rate over the PSNR range both cover and over
    30-40 dB where both reach into it, and BD-PSNR over the rates both cover (for the
    pairs whose PSNR ranges do not meet)."""
    fronts = {c: frontier(points, "psnr", "bpp") for c, points in curves.items()}

    def each_pair(delta: Callable[..., dict[str, Any] | None], *limits: float) -> dict[str, Any]:
        return {c: {p: delta(fronts[c], fronts[p], *limits) for p in curves if p != c} for c in curves}

    return {"bd_rate": {"covered": each_pair(bd_rate), "psnr_30_40": each_pair(bd_rate, *PSNR_RANGE)},
            "bd_psnr": each_pair(bd_psnr)}


def plot(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    photos.plot({"all test photographs": curves}, path, solid=[c for c in curves if c != WEBP])


def markdown(result: dict[str, Any]) -> str:
    """The README's tables, all photographs: each codec's BD-rate against the others over
    the PSNR they both cover, then its BD-PSNR over the rates they both cover."""
    codecs = list(result["curves"])

    def table(title: str, figures: dict[str, dict[str, Any]], cell: Callable[[dict[str, Any]], str], extra: str,
              column: Callable[[list[dict[str, Any]]], str]) -> list[str]:
        lines = [f"| {title} | " + " | ".join(f"vs {c}" for c in codecs) + f" | {extra} |",
                 "|---" * (len(codecs) + 2) + "|"]
        for codec in codecs:
            cells = ["–" if c == codec or figures[codec][c] is None else cell(figures[codec][c]) for c in codecs]
            lines.append(f"| {codec} | " + " | ".join(cells) + f" | {column(result['curves'][codec])} |")
        return lines

    return "\n".join([
        *table("BD-rate (PSNR range both cover)", result["bd_rate"]["covered"],
               lambda bd: f"{bd['percent']:+.1f}% ({bd['range'][0]:.1f}-{bd['range'][1]:.1f} dB)", "PSNR dB",
               lambda pts: f"{min(p['psnr'] for p in pts):.1f}-{max(p['psnr'] for p in pts):.1f}"), "",
        *table("BD-PSNR (rates both cover)", result["bd_psnr"],
               lambda bd: f"{bd['db']:+.2f} dB ({bd['rate_range'][0]:.2f}-{bd['rate_range'][1]:.2f} bpp)", "bpp",
               lambda pts: f"{min(p['bpp'] for p in pts):.3f}-{max(p['bpp'] for p in pts):.2f}")])


def publish(result: dict[str, Any], out: Path) -> None:
    """The JSON at `out`, its plot beside it, and the README's tables on stdout."""
    common.write_json(out, result)
    plot(result["curves"], out.with_suffix(".png"))
    print(markdown(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="training time of each CompressAI network, and of latentzip's whole ladder")
    parser.add_argument("--lmbdas", type=float, nargs="+", default=LMBDAS, help="CompressAI's rate points")
    parser.add_argument("--architecture", choices=("factorized", "hyperprior"), default="hyperprior")
    parser.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "latentzip" / "compressai-venv",
                        help="where CompressAI's throwaway venv is kept")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 photographs a group")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "learned-peer.json")
    parser.add_argument("--rescore", action="store_true",
                        help="train and code nothing: compare the curves --out holds again, and redraw its plot")
    args = parser.parse_args(argv)
    if args.rescore:
        result = json.loads(args.out.read_text())
        publish({**result, **compare(result["curves"])}, args.out)
        return 0
    started = common.now()

    groups = photos.photographs(args.quick)
    test = {name: im for g in groups.values() for name, im in g.items()}
    fit, _ = train_photos.sources()
    pieces = [p for image in fit.values() for p in train_photos.cut_into_pieces(image)]
    python = peer_venv(args.venv)

    measured: dict[str, dict[str, dict[str, Any]]] = {}
    anchors = {SHIPPED: photos.presets(None, None),
               WEBP: {f"webp:{q}": photos.peer("webp", q) for q in photos.PEERS["webp"]}}
    for codec, settings in anchors.items():
        measured[codec] = {s: photos.measure(c, test) for s, c in tqdm(settings.items(), desc=codec, file=sys.stderr)}
    peer_name = f"CompressAI bmshj2018 {args.architecture} ({args.minutes:g} min per lmbda)"
    with tempfile.TemporaryDirectory() as temp:
        measured[peer_name], peer_log = compressai_runs(python, pieces, test, args, Path(temp))
    t0 = time.perf_counter()
    codec, history = latentzip_run(pieces, args.minutes)
    ours_name = f"latentzip ({args.minutes:g} min, the whole ladder)"
    ours = photos.coders(photos.ladder(codec, "q"), None)
    measured[ours_name] = {s: photos.measure(c, test) for s, c in tqdm(ours.items(), desc="latentzip", file=sys.stderr)}

    curves = {c: [photos.aggregate(s, m, test) for s, m in settings.items()] for c, settings in measured.items()}
    curves = {c: curves[c] for c in (ours_name, peer_name, SHIPPED, WEBP)}
    peer_versions = subprocess.run([str(python), "-c", "import compressai, torch; print(compressai.__version__, "
                                     "torch.__version__, torch.get_num_threads())"],
                                    capture_output=True, text=True, check=True).stdout.split()
    result: dict[str, Any] = {
        "command": common.portable(common.command_line(SCRIPT, argv if argv is not None else sys.argv[1:])),
        "date": started, "machine": common.machine(("torch", "numpy", "pillow", "imagecodecs")),
        "compressai": {"version": peer_versions[0], "torch": peer_versions[1], "threads": int(peer_versions[2]),
                       "architecture": args.architecture, "lmbdas": list(args.lmbdas), "runs": peer_log},
        "latentzip_training": {"minutes": args.minutes, "seconds_with_coding": time.perf_counter() - t0,
                               "start": "linear", "top_lmbda": train_photos.TOP_LMBDA, "epochs": history},
        "training_pieces": len(pieces),
        "photos": {g: {n: list(im.shape[:2]) for n, im in p.items()} for g, p in groups.items()},
        "curves": curves,
        **compare(curves),
        "per_photo": measured,
    }
    publish(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
