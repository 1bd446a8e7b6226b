"""Train the photograph presets latentzip ships (photo:q1 ... photo:q8), resumably.

    python scripts/train_photos.py --minutes 120            # a fresh run
    python scripts/train_photos.py --minutes 120 --resume   # continue one that was stopped
    python scripts/train_photos.py --minutes 120 --start-from src/latentzip/models/photo-conv.safetensors --lr 5e-4
                                                            # go on from the shipped model (its checkpoint lost)
    python scripts/train_photos.py --refit-refinement       # keep the weights, fit the refinement tables again
    python scripts/train_photos.py --post-filter 30         # add a post-filter to the shipped model and train
                                                            # it alone for 30 minutes (the rest frozen)
    python scripts/train_photos.py --export DIR             # write the photographs to DIR (lossless WebP) ...
    python scripts/train_photos.py --sources DIR --device cuda --batch 64 ...
                                                            # ... and train from them on a machine without
                                                            # the collections

The training photographs are those of ../bench/sets.py and scikit-image: ufoai's
photo-derived textures, OpenCV's sample photographs (reduced 2x), KDE Plasma's wallpaper
photographs (reduced 4x) and scikit-image's bundled photographs (reduced 2x: several are
JPEG sources). They are cut into pieces of 128-256 px, so each photograph is drawn in
proportion to its area. Held out, never trained on: the textures' test families,
scikit-image's chelsea and coffee, and one in eight of the OpenCV and wallpaper
photographs (by a hash of the name). The sporco photographs of bench/photos.py are not
used at all. `--textures-share` keeps a stable share of the training textures (by a hash
of the name), for a lighter export or a mix that leans more on photographs. `--cut-outs`
adds the training share of tuxpaint's colour stamps (objects and clip art with alpha),
each laid on a flat ground, white or grey, as products are photographed: edges on flat
ground, which the other sources rarely show; one in eight of them is held out.

Training trains the post-filter (transforms.PostFilter, POST_WIDTH channels) with the rest
of the network; a model that has one goes on with it.

The run is one `latentzip.image.train.train` call with a time budget, a checkpoint after
every epoch and --resume. Its log (every epoch: time, device, loss, rate and PSNR on
the validation pieces; at the end, each preset on the held-out photographs) is written
to scripts/logs/photo-training.json as it goes. The model goes to
src/latentzip/models/photo-conv.safetensors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import sets  # noqa: E402

from latentzip import data, metrics  # noqa: E402
from latentzip.image import postfilter, zoo  # noqa: E402
from latentzip.image.codec import ImageCodec  # noqa: E402
from latentzip.image.train import EpochStats, TrainConfig, pick_device, split, train  # noqa: E402

DATASET, NETWORK = "photo", "conv"
LOG = ROOT / "scripts" / "logs" / "photo-training.json"
PIECE = 256  # training photographs are cut into pieces of PIECE/2 .. PIECE a side
HELD_OUT_SHARE = 1 / 8
SKIMAGE_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "camera", "brick",
                  "grass", "gravel", "moon", "coins")
SKIMAGE_HELD_OUT = ("chelsea", "coffee")
GROUND_MARGIN = 0.15  # of a cut-out's longer side, the flat ground on each side of it
GROUND_TINT = 16  # the most a grey ground's channels differ from its level
# The ladder's top lmbda, each of the eight rungs below a third of it (see TrainConfig.ladder):
# from about 0.1 bpp up to about 40 dB, so the presets span the 30-40 dB that photographs
# are compared at. Training moves a rung's quality down as it goes (the ladder of a
# 15-minute run at 0.03 ended at 34.5 dB), so the top starts well above 40 dB.
TOP_LMBDA = 0.2
QUALITIES = 8
POST_WIDTH = 32  # channels of the post-filter (transforms.PostFilter) the presets decode through


def cut_into_pieces(image: np.ndarray) -> list[np.ndarray]:
    """`image` cut into an even grid of pieces of PIECE/2 .. PIECE pixels a side."""
    rows = np.array_split(np.arange(image.shape[0]), max(1, -(-image.shape[0] // PIECE)))
    cols = np.array_split(np.arange(image.shape[1]), max(1, -(-image.shape[1] // PIECE)))
    return [image[r[0] : r[-1] + 1, c[0] : c[-1] + 1] for r in rows for c in cols]


def _folder(path: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("*.png"))}


def on_ground(cutout: Image.Image, name: str) -> np.ndarray:
    """An RGBA cut-out laid on a flat ground with a margin, as products are photographed:
    white for half of them, for the rest a grey of any level, a little tinted, drawn from
    the name (stable across runs)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
    grey = 255 if rng.random() < 0.5 else int(rng.integers(0, 256))
    ground = tuple(int(v) for v in np.clip(grey + rng.integers(-GROUND_TINT, GROUND_TINT + 1, 3) * (grey < 255), 0, 255))
    side = max(PIECE // 2, round(max(cutout.size) * (1 + 2 * GROUND_MARGIN)))
    canvas = Image.new("RGBA", (max(side, cutout.width), max(side, cutout.height)), (*ground, 255))
    canvas.alpha_composite(cutout, ((canvas.width - cutout.width) // 2, (canvas.height - cutout.height) // 2))
    return np.asarray(canvas.convert("RGB"))


def _skimage(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    from skimage import data as skdata

    found = {}
    for name in names:
        try:
            image = Image.fromarray(getattr(skdata, name)())
        except Exception as exc:  # a photograph scikit-image would have to download
            print(f"skipping scikit-image's {name}: {exc}", file=sys.stderr)
            continue
        found[name] = np.asarray(image.convert("RGB").reduce(2))
    return found


def sources(textures_share: float = 1.0, cut_outs: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training, held-out) photographs by name."""
    fit: dict[str, np.ndarray] = {}
    held: dict[str, np.ndarray] = {}
    textures = sets.prepare("textures")
    fit.update({f"textures/{k}": v for k, v in _folder(textures / "train").items()
                if sets.in_share(f"textures/{k}", textures_share)})
    held.update({f"textures/{k}": v for k, v in _folder(textures / "test").items()})
    shared = {f"{name}/{stem}": image for name in ("opencv", "wallpapers")
              for stem, image in _folder(sets.prepare(name) / "train").items()}
    if cut_outs:
        shared.update({f"stamps/{p.stem}": on_ground(Image.open(p).convert("RGBA"), f"stamps/{p.stem}")
                       for p in sorted((sets.prepare("stamps") / "train").glob("*.png"))})
    for name, image in shared.items():
        (held if sets.in_share(name, HELD_OUT_SHARE) else fit)[name] = image
    fit.update({f"skimage/{k}": v for k, v in _skimage(SKIMAGE_PHOTOS).items()})
    held.update({f"skimage/{k}": v for k, v in _skimage(SKIMAGE_HELD_OUT).items()})
    return fit, held


def export(photos: dict[str, dict[str, np.ndarray]], folder: Path) -> None:
    """Write {"fit": ..., "held": ...} photographs as lossless WebP files under `folder`
    (a name's "/" becomes "+"), for `read_export`. A folder that holds an export already
    is refused: photographs left from another share would be read back with these."""
    if any(folder.glob("*/*.webp")):
        sys.exit(f"{folder}: holds exported photographs already; export to an empty folder")
    for part, images in photos.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        for name, image in tqdm(images.items(), desc=f"export {part}", file=sys.stderr):
            Image.fromarray(image).save(folder / part / f"{name.replace('/', '+')}.webp", lossless=True, quality=100)


def read_export(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(training, held-out) photographs as `export` wrote them."""
    def part(name: str) -> dict[str, np.ndarray]:
        paths = sorted((folder / name).glob("*.webp"))
        if not paths:
            sys.exit(f"{folder / name}: no exported photographs (write them with --export)")
        return {p.stem.replace("+", "/"): np.asarray(Image.open(p).convert("RGB")) for p in paths}

    return part("fit"), part("held")


def config(minutes: float, device: str = TrainConfig.device, top_lmbda: float = TOP_LMBDA, lr: float = TrainConfig.lr,
           start: str = "linear", batch: int | None = None) -> TrainConfig:
    """The presets' training settings (a fresh run starts from the block KLT)."""
    return TrainConfig(arch="conv", lmbda=top_lmbda, qualities=QUALITIES, minutes=minutes, device=device, seed=0,
                       lr=lr, start=start, batch_size=batch, post=POST_WIDTH)


def measure(codec: ImageCodec, photos: dict[str, np.ndarray]) -> list[dict]:
    """Each quality on held-out images, one real file per quality, at effort 0 (the
    analysis's latents, as the presets' descriptions say: what the network does)."""
    codec = codec.at_effort(0)
    images = list(photos.values())
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    out = []
    for quality in range(1, codec.cfg.qualities + 1):
        blob = codec.encode(images, quality=quality)
        out.append({"quality": quality, "bpp": 8 * len(blob) / pixels,
                    "psnr": metrics.mean_psnr(images, codec.decode(blob))})
    return out


def _post_filter(trained: ImageCodec, pieces: list[np.ndarray], minutes: float, log: dict) -> ImageCodec:
    """`trained` with its post-filter trained alone on the training pieces (added if it
    has none), and its refinement tables fitted again on what it now decodes."""
    model = trained.model if trained.cfg.post else postfilter.with_post_filter(trained.model, POST_WIDTH)
    fit_pieces = split(pieces, TrainConfig(**trained.meta["train"]))[1]  # the pieces training fitted
    with tqdm(desc="post-filter", unit=" steps", file=sys.stderr) as bar:
        stats = postfilter.fit(model, fit_pieces, minutes, on_step=lambda _: bar.update())
    log["post_filter"] = {**asdict(stats), "width": model.cfg.post, "device": "cpu", "run": len(log["runs"]),
                          "start_from": {"fingerprint": trained.fingerprint.hex()}}
    return ImageCodec.from_model(model, dict(trained.meta)).with_refinement(fit_pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=120.0, help="the whole run's budget, resumed parts included")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--refit-refinement", action="store_true",
                        help="keep the trained model's weights; fit its refinement tables again")
    parser.add_argument("--post-filter", type=float, metavar="MINUTES",
                        help="keep the trained model's weights; train its post-filter alone for MINUTES "
                             f"(one of {POST_WIDTH} channels is added where it has none)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--top-lmbda", type=float, default=TOP_LMBDA, help="the lmbda of the best quality")
    parser.add_argument("--start-from", type=Path,
                        help="a photo model to go on from (its weights; Adam starts afresh); --resume needs it again")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="the peak learning rate")
    parser.add_argument("--batch", type=int, help="crops per step (default: training's, for a CPU)")
    parser.add_argument("--textures-share", type=float, default=1.0,
                        help="the share of the training textures to keep (stable by name)")
    parser.add_argument("--cut-outs", action="store_true",
                        help="also train on the training share of the stamps' cut-outs, on flat grounds")
    parser.add_argument("--export", type=Path, metavar="DIR", help="write the photographs to DIR and stop")
    parser.add_argument("--sources", type=Path, metavar="DIR", help="read the photographs from an --export")
    parser.add_argument("--no-measure", action="store_true",
                        help="save the model without measuring its presets on the held-out photographs "
                             "(--refit-refinement measures them later, on the same --sources)")
    parser.add_argument("--checkpoint", type=Path, default=data.cache_dir() / "photo-training.ckpt")
    parser.add_argument("-o", "--output", type=Path, default=zoo.network_path(DATASET, NETWORK))
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args(argv)
    if args.sources and (args.textures_share != 1.0 or args.cut_outs):
        parser.error("--textures-share and --cut-outs apply to the collections; an export keeps the photographs "
                     "it was written with")

    fit_photos, held = read_export(args.sources) if args.sources else sources(args.textures_share, args.cut_outs)
    if args.export:
        export({"fit": fit_photos, "held": held}, args.export)
        return 0
    pieces = [p for image in fit_photos.values() for p in cut_into_pieces(image)]
    print(f"{len(fit_photos)} training photographs in {len(pieces)} pieces; {len(held)} held out", file=sys.stderr)
    carry_on = (args.resume or args.refit_refinement or args.post_filter or args.start_from) and args.log.exists()
    log = json.loads(args.log.read_text()) if carry_on else {"runs": [], "epochs": []}
    device = str(pick_device(args.device))
    log["runs"].append({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "resumed": args.resume,
                        "refit_refinement": args.refit_refinement, "post_filter_minutes": args.post_filter})
    log["sources"] = {"training photographs": len(fit_photos), "pieces": len(pieces), "held out": sorted(held),
                      "textures": sum(k.startswith("textures/") for k in fit_photos)}

    if args.refit_refinement:
        trained = ImageCodec.load(args.output)
        codec = trained.with_refinement(split(pieces, TrainConfig(**trained.meta["train"]))[1])
    elif args.post_filter:
        codec = _post_filter(ImageCodec.load(args.output), pieces, args.post_filter, log)
    else:
        def on_epoch(stats: EpochStats) -> None:
            log["epochs"].append({**asdict(stats), "device": device, "run": len(log["runs"])})
            common.write_json(args.log, log)

        cfg = config(args.minutes, device=args.device, top_lmbda=args.top_lmbda, lr=args.lr,
                     start=str(args.start_from) if args.start_from else "linear", batch=args.batch)
        if args.start_from:
            fingerprint = ImageCodec.load(args.start_from).fingerprint.hex()
            log["runs"][-1]["start_from"] = {"file": args.start_from.name, "fingerprint": fingerprint}
        result = train(pieces, cfg, checkpoint=args.checkpoint, resume=args.resume, on_epoch=on_epoch)
        codec = result.codec
        if args.start_from:  # the model and the log name the start as the repository does, not as this machine does
            codec.meta["train"]["start"] = common.portable(str(args.start_from.resolve()))
        log["config"] = {**asdict(result.config), "start": codec.meta["train"]["start"]} if result.config else None
    if args.no_measure:
        codec.save(args.output)
        common.write_json(args.log, log)
        return 0
    groups = {"textures": "textures/", "cut-outs": "stamps/"}
    photos = {k: v for k, v in held.items() if not k.startswith(tuple(groups.values()))}
    log["held_out_rd"] = {"photographs": measure(codec, photos)}
    for group, prefix in groups.items():
        part = {k: v for k, v in held.items() if k.startswith(prefix)}
        if part:
            log["held_out_rd"][group] = measure(codec, part)
    presets = {}
    for point in log["held_out_rd"]["photographs"]:
        presets[f"{DATASET}:q{point['quality']}"] = {
            "quality": point["quality"], "max_error": None,
            "description": f"{point['bpp']:.3f} bpp, {point['psnr']:.2f} dB PSNR on {len(photos)} held-out photographs"}
    codec.meta.update(presets=presets, fingerprint=codec.fingerprint.hex(), dataset=DATASET)
    codec.meta.pop("default_preset", None)
    codec.save(args.output)
    log["model"] = {"file": args.output.name, "bytes": args.output.stat().st_size, "fingerprint": codec.fingerprint.hex()}
    common.write_json(args.log, log)
    for name, preset in presets.items():
        print(f"{name}: {preset['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
