"""Verbs of the applications: denoise, anomaly, embed, colorize (and train --task colorize,
train --noise-kind watermark)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LatentzipError
from ..fsio import write_bytes, write_tree
from .image import _refuse_overwrite, budget, load_training_set, output_directory, say_notes

if TYPE_CHECKING:
    import numpy as np

SPEC_HELP = "dataset name[:split][[:N]], a directory of images, an image or a .npy file"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("denoise", help="clean noisy or watermarked images with a model trained with --noise or "
                                       "--noise-kind watermark")
    _model_and_inputs(p)
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="where the cleaned PNGs go")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing images in OUTDIR")
    p.set_defaults(func=_denoise)

    p = sub.add_parser("anomaly", help="score images by how unlike normal ones they are")
    p.add_argument("-m", "--model", default=None,
                   help="shipped model name or model file (default: train a detector on the --fit images)")
    p.add_argument("--fit", required=True, metavar="SPEC", help=f"normal images: {SPEC_HELP}")
    p.add_argument("--score", required=True, metavar="SPEC", help=f"images to score: {SPEC_HELP}")
    p.add_argument("--fpr", type=float, default=0.05, help="share of the --fit images to flag: sets the threshold")
    p.add_argument("--by", choices=("combined", "error", "bits"), default="combined", help="score that flags")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write every score as CSV")
    p.add_argument("--save-model", default=None, metavar="MODEL",
                   help="without -m: also write the trained model, for -m next time")
    p.add_argument("--epochs", type=int, default=None, help="without -m: training epochs (default 10)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite FILE and MODEL")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    p.set_defaults(func=_anomaly)

    p = sub.add_parser("embed", help="export latent codes as .npy, .csv or .parquet")
    _model_and_inputs(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="codes file: .npy, .csv or .parquet")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUT")
    p.set_defaults(func=_embed)

    p = sub.add_parser("colorize", help="colour grey images with a model trained with --task colorize")
    _model_and_inputs(p, "model file made by latentzip train --task colorize")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="where the colour PNGs go")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing images in OUTDIR")
    p.set_defaults(func=_colorize)


def _model_and_inputs(p: argparse.ArgumentParser, model_help: str = "shipped model name or model file") -> None:
    p.add_argument("-m", "--model", required=True, help=model_help)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or directories")
    p.add_argument("--data", default=None, metavar="SPEC", help=f"instead of INPUTs: {SPEC_HELP}")


def _inputs(args: argparse.Namespace) -> tuple[list[str], list[np.ndarray]]:
    """(names, images) from INPUTs or --data, whichever was given."""
    from .. import data

    if bool(args.inputs) == bool(args.data):
        raise LatentzipError("give image files or directories, or --data SPEC (one of the two)")
    if args.data:
        dataset = data.load(args.data)
        say_notes(dataset.notes)
        return dataset.names, list(dataset.images)
    notes: set[str] = set()
    named = data.read_images(args.inputs, notes)
    say_notes(data.reading_notes(notes))  # these verbs write PNGs or codes, not coded images
    return [name for name, _ in named], [image for _, image in named]


def _output_file(path: str, force: bool) -> None:
    """Refuse before any work an output that exists (without -f) or has no directory."""
    _refuse_overwrite(path, force)
    parent = Path(path).parent
    if not parent.is_dir():
        raise LatentzipError(f"cannot write {path}: directory {parent} does not exist")


def _denoise(args: argparse.Namespace) -> int:
    from ..apps import denoise, load_denoiser, trained_noise

    model = load_denoiser(args.model)
    names, images = _inputs(args)
    files = _pngs(names, denoise(model, images, progress=True))
    write_tree(args.output, files.items(), overwrite=args.force)
    noise = trained_noise(model)
    how = ("watermarks removed" if noise[1] == "watermark" else f"trained on {noise[1]} noise {noise[0]:g}") \
        if noise else "trained without --noise: reconstructed only"
    print(f"{len(files)} image(s) -> {args.output}/ ({model.label}: {how})", file=sys.stderr)
    return 0


def _pngs(names: list[str], images: list[np.ndarray]) -> dict[str, bytes]:
    """PNG files under the inputs' names (see `data.png_names`)."""
    from .. import data

    files: dict[str, bytes] = {}
    for png, image in zip(data.png_names(names), images, strict=True):
        if png in files:
            raise LatentzipError(f"two inputs would both be written as {png}")
        files[png] = data.to_png_bytes(image)
    return files


def _colorize(args: argparse.Namespace) -> int:
    from ..apps import Colorizer, colorize
    from ..apps.lab import is_grey

    model = Colorizer.load(args.model)
    names, images = _inputs(args)
    files = _pngs(names, colorize(model, images, progress=True))
    write_tree(args.output, files.items(), overwrite=args.force)
    colour = sum(not is_grey(image) for image in images)
    if colour:
        print(f"{colour} of {len(images)} input(s) were in colour: made grey first (their lightness kept)", file=sys.stderr)
    print(f"{len(files)} image(s) -> {args.output}/ ({model.label})", file=sys.stderr)
    return 0


def train_unet_task(args: argparse.Namespace) -> int:
    """`latentzip train --task colorize` and `latentzip train --noise-kind watermark`."""
    from ..apps import MarkRemover, Marks, UNetTrainConfig, train_colorizer, train_unmarker

    cfg = UNetTrainConfig(widths=tuple(args.hidden) if args.hidden else None, crop=args.crop,
                          batch_size=args.batch_size, steps=args.steps, minutes=budget(args, "steps"), lr=args.lr,
                          seed=args.seed, device=args.device)
    output = output_directory(args.output)
    colour = args.task == "colorize"
    marks = None if colour else Marks.from_dir(args.marks) if args.marks else Marks.default()
    dataset = load_training_set(args)

    def say(cfg: UNetTrainConfig, images: int, left_out: int, device: str) -> None:
        budget = f"{cfg.steps:,} steps" if cfg.steps is not None else ""
        if cfg.minutes is not None:
            budget += f"{' within ' if budget else 'for '}{cfg.minutes:g} min"
        what = ("a colourisation network", "colour images", "grey or smaller than a crop") if colour else (
            f"a watermark-removal network ({marks.describe()})", "images", "smaller than a crop")
        skipped = f" ({left_out:,} {what[2]} left out)" if left_out else ""
        print(f"training {what[0]}, channels {'-'.join(map(str, cfg.widths or ()))}, on {images:,} {what[1]}{skipped}, "
              f"crops of {cfg.crop}, batches of {cfg.batch_size}, {budget}, on {device}", file=sys.stderr)

    on_start = None if args.quiet else say
    if colour:
        result = train_colorizer(dataset.images, cfg, progress=not args.quiet, on_start=on_start)
    else:
        result = train_unmarker(dataset.images, cfg, marks, progress=not args.quiet, on_start=on_start)
    result.model.save(output)
    note = " (stopped by --minutes)" if result.stopped_early else ""
    verb = "colorize" if colour else "denoise"
    print(f"wrote {output}: {result.steps:,} steps in {result.seconds / 60:.1f} min{note}; "
          f"use it with latentzip {verb} -m {args.output}", file=sys.stderr)
    if isinstance(result.model, MarkRemover) and (calibrated := result.model.calibration_note()):
        print(calibrated, file=sys.stderr)
    return 0


def _anomaly(args: argparse.Namespace) -> int:
    from .. import data
    from ..apps.anomaly import AnomalyDetector, scoring_note, train_detector
    from ..image.zoo import load_model
    from .image import _say_settings

    for path in (args.csv, args.save_model):
        if path:
            _output_file(path, args.force)
    if args.model and (args.save_model or args.epochs is not None):
        raise LatentzipError("--save-model and --epochs are for the detector trained without -m")
    if args.epochs is not None and args.epochs < 1:
        raise LatentzipError("epochs must be positive")
    fit, new = data.load(args.fit), data.load(args.score)
    if not args.quiet:
        say_notes(sorted({*fit.notes, *new.notes}))
    normal = fit.images
    if args.model:
        codec = load_model(args.model)
        note = scoring_note(codec)
        if note:
            print(f"latentzip: warning: {note}", file=sys.stderr)
        detector = AnomalyDetector(codec, fpr=args.fpr, score=args.by).fit(normal, progress=True)
    else:
        detector = train_detector(normal, fpr=args.fpr, score=args.by, epochs=args.epochs, progress=not args.quiet,
                                  on_start=None if args.quiet else _say_settings)
        trained, cfg = detector.codec.meta["anomaly"]["trained_images"], detector.codec.cfg
        size = "x".join(map(str, detector.thumbnails)) + " thumbnails of " if detector.thumbnails else ""
        print(f"trained a {cfg.arch} detector ({cfg.latent} latents) on {size}{trained} of the --fit images; "
              f"the other {len(normal) - trained} set the threshold", file=sys.stderr)
    scores = detector.score(new.images, progress=True)
    rows = [
        (name, f"{e:.2f}", f"{b:.1f}", f"{c:.1f}", "yes" if flag else "no")
        for name, e, b, c, flag in zip(new.names, scores.error, scores.bits, scores.combined, scores.flagged)
    ]
    header = ("name", "error", "bits", "combined", "anomaly")
    if args.csv:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([header, *rows])
        write_bytes(args.csv, text.getvalue().encode(), overwrite=args.force)
    if args.save_model:
        detector.codec.save(args.save_model)
        print(f"wrote {args.save_model}", file=sys.stderr)
    if not args.quiet:
        width = max(len(header[0]), *(len(r[0]) for r in rows))
        for row in [header, *rows]:
            print(f"{row[0]:<{width}}  {row[1]:>10}  {row[2]:>10}  {row[3]:>9}  {row[4]}")
    print(f"{int(scores.flagged.sum())} of {len(rows)} image(s) flagged: {args.by} score above "
          f"{detector.threshold:.4g}, which {args.fpr:.1%} of the --fit images exceed", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from ..apps import embed, write_codes
    from ..apps.embed import codes_format
    from ..image.zoo import load_model

    _output_file(args.output, args.force)
    codes_format(args.output)
    codec = load_model(args.model)
    names, images = _inputs(args)
    codes = embed(codec, images, progress=True)
    write_codes(args.output, codes, names, overwrite=args.force)
    print(f"{len(codes)} image(s) -> {args.output}: {codes.shape[1]} numbers each", file=sys.stderr)
    return 0
