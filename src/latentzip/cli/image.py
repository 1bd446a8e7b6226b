"""Verbs of the lossy image codec: models, train, encode, decode, eval.

A MODEL is a shipped name (`fashion-mnist:q3`), a model file, or a model file with one
of its presets (`my.model:q2`, see `latentzip train`'s output)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from tqdm import tqdm

from ..errors import LatentzipError, ModelError
from ..fsio import read_bytes, write_bytes, write_tree

if TYPE_CHECKING:
    from ..data import Dataset
    from ..image.codec import Progress
    from ..image.evaluate import StagedProgress
    from ..image.train import TrainConfig

DEFAULT_MINUTES = 15.0  # the training budget when neither --epochs (--steps) nor --minutes is given
# Options of one --task only, by their destination: given with the other, they are refused.
CODEC_ONLY = {"arch": "--arch", "prior": "--prior", "reg": "--reg", "reg_weight": "--reg-weight", "noise": "--noise",
              "noise_kind": "--noise-kind", "latent": "--latent", "levels": "--levels", "qualities": "--qualities",
              "lmbda": "--lmbda", "epochs": "--epochs", "procs": "--procs", "resume": "--resume", "start": "--start",
              "post": "--post-filter"}
UNET_ONLY = {"steps": "--steps"}  # the U-Net tasks: --task colorize, --noise-kind watermark
MARKS_ONLY = {"marks": "--marks"}


MAX_ERROR_HELP = (
    "add a refinement layer so that no pixel is off by more than D grey levels "
    "(0 = lossless; more bytes, higher quality); images such as scans, flat graphics and, near lossless, "
    "photographs are coded directly, pixel by pixel within the same bound, where that takes fewer bytes; "
    "default: the shipped model's own bound, if it has one"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=_models)

    p = sub.add_parser("train", help="train a codec (or a colourisation or watermark-removal network) on your images",
                       description="Train a codec on your images, with --task colorize a network that colours "
                                   "grey images, or with --noise-kind watermark a network that removes watermarks. "
                                   "Every setting left out is chosen from the images and the time budget, and printed.")
    p.add_argument("--data", required=True, metavar="SPEC", help="dataset name[:split][[:N]] or a directory of images")
    p.add_argument("--task", choices=("codec", "colorize"), default="codec",
                   help="codec: an image codec; colorize: a network from lightness to colour, trained on the colour "
                        "images of --data (see latentzip colorize)")
    p.add_argument("--arch", default=None,  # checked by TrainConfig: the parser must not import torch
                   help="network: dense, deep, vae or conv (default: deep for small grey images of one size, else conv)")
    p.add_argument("--prior", choices=("factorized", "hyperprior"), default=None,
                   help="latent codec (default: hyperprior for conv, factorized for dense)")
    p.add_argument("--reg", choices=("none", "sparse", "contractive"), default="none")
    p.add_argument("--reg-weight", type=float, default=None, metavar="W", help="weight of the --reg penalty")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="denoising: corrupt inputs while training")
    p.add_argument("--noise-kind", choices=("gaussian", "salt-pepper", "watermark"), default="gaussian",
                   help="gaussian, salt-pepper (with --noise), or watermark: a network that removes text and logos "
                        "laid over images, trained on the clean images of --data marked afresh at every step "
                        "(see latentzip denoise)")
    p.add_argument("--marks", default=None, metavar="DIR",
                   help="--noise-kind watermark: fonts (.ttf, .otf) and PNG logos to mark the training images with, "
                        "besides the default fonts and drawn logos")
    p.add_argument("--latent", type=int, default=None, metavar="N", help="code size (dense) or latent channels (conv)")
    p.add_argument("--hidden", type=int, nargs="+", default=None, metavar="W",
                   help="layer widths (dense) or channels (conv; colorize and watermark: per level, from half resolution down)")
    p.add_argument("--levels", type=int, default=None, help="conv: downsampling steps (each halves H and W; default 4)")
    p.add_argument("--qualities", type=int, default=None, metavar="N",
                   help="conv: qualities one model codes at (default 6, or 1 with --lmbda)")
    p.add_argument("--lmbda", type=float, default=None, metavar="L",
                   help="rate-distortion trade-off: higher = better quality, more bytes (conv: of the top quality)")
    p.add_argument("--start", default=None, metavar="FROM",
                   help="conv: where the network starts: a trained model of the same network (a shipped name or a "
                        "model file; a factorized network also starts from a hyperprior's transforms), or 'linear' "
                        "(a linear code fitted to the images); default: the shipped photo "
                        "model where the network chosen is its network (colour or grey images of 64 px or more, with "
                        "an alpha channel added for images with alpha), else linear")
    p.add_argument("--post-filter", dest="post", type=int, default=None, metavar="N",
                   help="conv: channels of a filter after the synthesis that smooths block edges, trained with the "
                        "rest (0: none; default: the filter of the model the network starts from, none from a "
                        "linear start); it costs decoding time")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None,
                   help="colorize and watermark: training steps (default: as many as --minutes allows)")
    p.add_argument("--minutes", type=float, default=None,
                   help=f"time budget; the model is written when it runs out (default {DEFAULT_MINUTES:g} without --epochs)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--crop", type=int, default=None, metavar="PX", help="conv: side of the random training crops")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="where to train (auto: a GPU when PyTorch sees one; mixed precision there)")
    p.add_argument("--procs", type=int, default=None, metavar="N",
                   help="train in N processes with PyTorch DDP (as torchrun --nproc-per-node N would); "
                        "--batch-size is the batch of all of them together")
    p.add_argument("--resume", action="store_true", help="continue from MODEL.ckpt")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-o", "--output", required=True, metavar="MODEL")
    p.set_defaults(func=_train, defaults={dest: p.get_default(dest) for dest in (*CODEC_ONLY, *UNET_ONLY, *MARKS_ONLY)})

    p = sub.add_parser("encode", help="compress images into one .ltz file")
    p.add_argument("-m", "--model", required=True, help="shipped model name, model file, or MODEL:PRESET (my.model:q3)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or directories")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUT")
    p.add_argument("--quality", type=int, default=None, metavar="Q",
                   help="one of the model's qualities (1 = smallest; default: the model's or preset's own)")
    p.add_argument("--max-error", type=int, default=None, metavar="D", help=MAX_ERROR_HELP)
    p.add_argument("--alpha-error", type=int, default=None, metavar="D",
                   help="images with alpha: no alpha value off by more than D levels (0: lossless; default: "
                        "chosen for each image by rate and distortion, never above --max-error)")
    p.add_argument("--effort", type=int, default=None, metavar="E",
                   help="conv models: how hard to fit each image's latents before coding, 0 (fastest) to 2 "
                        "(fewest bytes, several times slower encoding); default 2, or 1 for models with a "
                        "post-filter such as photo:*; decoding is the same")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_encode)

    p = sub.add_parser("decode", help="restore the images of a .ltz file as PNG")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("-m", "--model", default=None, help="model file, when the file was not made by a shipped model")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing images in OUTDIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_decode)

    p = sub.add_parser("eval", help="bytes/image, bpp, PSNR and SSIM of real bitstreams")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--max-error", type=int, default=None, metavar="D", help=MAX_ERROR_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval)


def _models(args: argparse.Namespace) -> int:
    from ..image import zoo

    for name in zoo.names():
        print(f"{name:<20} {zoo.describe(name)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..image.train import TrainConfig, train

    if args.task == "colorize":
        _refuse_options(args, CODEC_ONLY | MARKS_ONLY, "--task colorize")
    elif args.noise_kind == "watermark":
        _refuse_options(args, {k: v for k, v in CODEC_ONLY.items() if k != "noise_kind"}, "--noise-kind watermark")
    else:
        _refuse_options(args, UNET_ONLY | MARKS_ONLY, "--task codec")
    if args.task == "colorize" or args.noise_kind == "watermark":
        from .apps import train_unet_task

        return train_unet_task(args)
    if args.procs is not None:
        return _launch(args.procs, args.argv)

    minutes = budget(args, "epochs")
    cfg = TrainConfig(
        arch=args.arch, latent=args.latent, hidden=tuple(args.hidden) if args.hidden else None, levels=args.levels,
        prior=args.prior, qualities=args.qualities, reg=args.reg, reg_weight=args.reg_weight, noise=args.noise,
        noise_kind=args.noise_kind, lmbda=args.lmbda, epochs=args.epochs, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, seed=args.seed, minutes=minutes, device=args.device, start=args.start, post=args.post,
    )
    output = output_directory(args.output)
    dataset = load_training_set(args)
    checkpoint = output.with_name(output.name + ".ckpt")
    result = train(dataset.images, cfg, checkpoint=checkpoint, resume=args.resume, progress=not args.quiet,
                   on_start=None if args.quiet else _say_settings)
    if not result.leader:  # another process of a DDP run: rank 0 writes the model
        return 0
    result.codec.save(output)
    checkpoint.unlink(missing_ok=True)
    note = " (stopped by --minutes)" if result.stopped_early else ""
    print(f"wrote {output}{note}", file=sys.stderr)
    for name, preset in result.codec.presets().items():
        print(f"  {args.output}:{name:<4} {preset['description']}", file=sys.stderr)
    return 0


def _refuse_options(args: argparse.Namespace, options: dict[str, str], task: str) -> None:
    """Refuse options given that do not apply to the `task`."""
    given = [flag for dest, flag in options.items() if getattr(args, dest) != args.defaults[dest]]
    if given:
        raise LatentzipError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to {task}")


def load_training_set(args: argparse.Namespace) -> Dataset:
    """The images of --data, within the pixels training holds (a note says when cut)."""
    from .. import data
    from ..image.train import TRAIN_MAX_PIXELS

    dataset = data.load(args.data, max_pixels=TRAIN_MAX_PIXELS, seed=args.seed)
    if not args.quiet:
        say_notes(dataset.notes)
    return dataset


def say_notes(notes: Iterable[str]) -> None:
    """What reading the images changed (data.decode_image's notes), a line each."""
    for note in notes:
        print(f"latentzip: note: {note}", file=sys.stderr)


def output_directory(path: str) -> Path:
    """A model file's path, refused before any work when its directory does not exist."""
    output = Path(path)
    if not output.parent.is_dir():
        raise LatentzipError(f"cannot write {output}: directory {output.parent} does not exist")
    return output


def budget(args: argparse.Namespace, count: str) -> float | None:
    """The time budget: --minutes, or DEFAULT_MINUTES when no --`count` bounds the run."""
    return args.minutes if args.minutes is not None or getattr(args, count) is not None else DEFAULT_MINUTES


def _launch(procs: int, argv: list[str]) -> int:
    from ..image.ranks import launch

    rest = [a for k, a in enumerate(argv) if not (a == "--procs" or a.startswith("--procs=")
                                                 or (k and argv[k - 1] == "--procs"))]
    code, notes = launch(procs, [sys.executable, "-m", "latentzip", *rest])
    for note in notes:
        print(f"latentzip: {note}", file=sys.stderr)
    return code


def _say_settings(cfg: TrainConfig, images: int, device: str) -> None:
    """Print what a run uses, the settings it chose included."""
    start = "a linear start" if cfg.start == "linear" else f"starting from {cfg.start}"
    prior = f"{cfg.prior} with context" if cfg.prior == "hyperprior" and cfg.context else cfg.prior
    post = f", a post-filter of {cfg.post} channels" if cfg.post else ""
    net = f"{cfg.arch}, {cfg.latent} latents" + (f", {cfg.levels} levels, {prior}{post}, {cfg.qualities} qualities, "
                                                  f"crops of {cfg.crop}, {start}" if cfg.arch == "conv" else "")
    if cfg.epochs is None:
        budget = f"for {cfg.minutes:g} min"
    else:
        budget = f"{cfg.epochs} epochs" + (f" within {cfg.minutes:g} min" if cfg.minutes else "")
    counted = f"{images:,} image{'s' if images != 1 else ''}"
    print(f"training {net} on {counted}, batches of {cfg.batch_size}, {budget}, on {device}", file=sys.stderr)


def _encode(args: argparse.Namespace) -> int:
    from .. import data
    from ..image.catalog import PER_IMAGE
    from ..image.codec import file_catalog
    from ..image.zoo import load_model

    _refuse_overwrite(args.output, args.force)
    codec = load_model(args.model)
    codec.check_sizes(data.header_sizes(args.inputs))  # a folder too large for one file is refused unread
    notes: set[str] = set()
    named = data.read_images(args.inputs, notes)
    say_notes(sorted(notes))
    pixels = sum(im.shape[0] * im.shape[1] for _, im in named)
    with _pixel_bar("encoding", args.quiet) as progress:
        blob = codec.encode([im for _, im in named], [name for name, _ in named], max_error=args.max_error,
                            quality=args.quality, alpha_error=args.alpha_error, effort=args.effort, progress=progress)
    write_bytes(args.output, blob, overwrite=args.force)
    cat = file_catalog(blob)
    bound = cat.alpha_error
    alpha = "" if not bound or args.alpha_error is not None else (
        ", alpha within a bound chosen for each image" if bound == PER_IMAGE else f", alpha within {bound} levels")
    directly = sum(cat.direct or ())
    coded = f", {directly} coded directly, pixel by pixel (cheaper than the model's code)" if directly else ""
    print(f"{len(named)} image(s) -> {args.output}: {len(blob)} bytes, {len(blob) / len(named):.1f} bytes/image, "
          f"{8 * len(blob) / pixels:.3f} bpp{alpha}{coded}", file=sys.stderr)
    return 0


def _decode(args: argparse.Namespace) -> int:
    from .. import data
    from ..image import zoo
    from ..image.catalog import MAX_FILE
    from ..image.codec import file_header
    from ..image.zoo import load_model

    blob = read_bytes(args.input, MAX_FILE)
    need, cat = file_header(blob)
    pngs_named = data.png_names(cat.names)
    if args.model:
        codec = load_model(args.model)
    else:
        name = zoo.find(need)
        if name is None:
            raise ModelError(f"{args.input} was made with a model that is not shipped ({need.hex()}); pass it with -m MODEL")
        codec = zoo.load(name)
    written = 0

    def pngs(progress: Progress) -> Iterator[tuple[str, bytes]]:  # made one by one as the file decodes
        nonlocal written
        for png, (_, image) in zip(pngs_named, codec.iter_decode(blob, progress), strict=True):
            written += 1
            yield png, data.to_png_bytes(image)

    with _pixel_bar("decoding", args.quiet) as progress:
        write_tree(args.output, pngs(progress), overwrite=args.force)
    print(f"{written} image(s) -> {args.output}/", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .. import data
    from ..image.zoo import load_model
    from ..image.evaluate import evaluate

    codec = load_model(args.model)
    dataset = data.load(args.data)
    with _stage_bar(args.quiet, "encoding") as progress:
        result = evaluate(codec, list(dataset.images), max_error=args.max_error, progress=progress)
    rows = [
        ("images", f"{result.images}"),
        ("bytes/image (one file)", f"{result.bytes_per_image:.2f}"),
        ("bytes/image (payload)", f"{result.payload_bytes_per_image:.2f}"),
        ("bytes (one image per file)", f"{result.single_file_bytes:.2f}"),
        ("bytes/image (prior estimate)", f"{result.estimated_bytes_per_image:.2f}"),
        ("bpp", f"{result.bpp:.4f}"),
        ("PSNR (dB)", f"{result.psnr:.2f}"),
        ("SSIM", "- (no image of 3x3 or more)" if result.ssim is None else f"{result.ssim:.4f}"),
        ("max |error| (grey levels)", f"{result.max_abs_error}"),
        ("encode images/s", f"{result.images / result.encode_seconds:.0f}"),
        ("decode images/s", f"{result.images / result.decode_seconds:.0f}"),
    ]
    for key, value in rows:
        print(f"{key:<30} {value}")
    if args.json:
        record = {"model": args.model, "data": args.data, **result.as_dict()}
        write_bytes(args.json, (json.dumps(record, indent=2) + "\n").encode())
    return 0


@contextmanager
def _pixel_bar(what: str, quiet: bool) -> Iterator[Progress]:
    """A progress bar on a terminal's stderr (none when piped, or with -q) for the
    `progress` the codec tells: a share and times, no counts (an encode that decodes as
    well counts each pixel twice)."""
    with _stage_bar(quiet, what) as staged:
        yield lambda done, total: staged(what, done, total)


@contextmanager
def _stage_bar(quiet: bool, first: str = "") -> Iterator[StagedProgress]:
    """`_pixel_bar` for work in stages, the `first` named from the start: the bar starts
    afresh, named, at each stage."""
    with tqdm(desc=first, bar_format="{l_bar}{bar}| {elapsed}<{remaining}", leave=False, file=sys.stderr,
              disable=True if quiet else None) as bar:
        current = [first]

        def advance(stage: str, done: int, total: int) -> None:
            if current[0] != stage:
                current[0] = stage
                bar.reset(total)
                bar.set_description_str(stage)
            bar.total = total
            bar.update(done)

        yield advance


def _refuse_overwrite(path: str, force: bool) -> None:
    if path != "-" and Path(path).exists() and not force:
        raise LatentzipError(f"{path} already exists (use -f to overwrite)")
