"""Benchmark of lossless files of scans and flat graphics, against lossless coders.

    python bench/scans.py [--preset photo:q4] [--graphics 200] [--out bench/results/scans.json]

The eight CCITT fax test pages (bench/sets.py `scans`: 1-bit scans, 1728x2376, as
jbigkit ships them) are coded losslessly. latentzip codes them with a shipped preset and
`max_error=0`, all eight in one file and each in a file of its own: a lossless file
codes a page directly, so exactly (image/direct.py), where that takes fewer bytes than
the model's code and its lossless refinement layer, whose cost (`code_bits`) is reported
beside it. The peers code each page in a file of its own, in the same run: PNG at 1 bit
per pixel (Pillow, optimized), WebP lossless (method 6) and JPEG XL lossless (effort 7),
both from the 8-bit grey page; and JBIG (ITU-T T.82, the files jbigkit ships the pages
in). Every size is real bytes, headers included, and every latentzip file is decoded and
checked to give the page back exactly.

Graphics: the first --graphics test emoji (64x64 RGBA) and icons (the emoji at 32x32) of
bench/sets.py, coded the same way into one latentzip file per set, against PNG
(optimized), WebP lossless (method 6) and JPEG XL lossless (effort 7), a file per image.
Checked: every value that shows, and alpha, comes back exactly (what lies under alpha 0
is not kept, by latentzip or by WebP).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
from PIL import Image

from latentzip.image.codec import file_catalog
from latentzip.image.zoo import load_model

import common
import sets

SCRIPT = "bench/scans.py"
SHOWN = {"png (1 bit per pixel)": "PNG (1 bit per pixel)", "webp lossless": "WebP lossless",
         "jpeg xl lossless": "JPEG XL lossless", "jbig": "JBIG"}  # the README's names of the peers


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="photo:q4", help="the model whose lossless files are measured")
    parser.add_argument("--graphics", type=int, default=200, help="test emoji and icons, the first in name order")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "scans.json")
    return parser.parse_args(argv)


def pages() -> dict[str, np.ndarray]:
    """The pages by name, as 8-bit grey (0 and 255)."""
    found = sorted((sets.prepare("scans") / "test").glob("*.png"))
    return {path.stem: np.asarray(Image.open(path).convert("L")) for path in found}


def _pillow(page: np.ndarray, mode: str, fmt: str, **options: Any) -> int:
    out = io.BytesIO()
    Image.fromarray(page).convert(mode).save(out, fmt, **options)
    return len(out.getvalue())


def peers(named: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Bytes of each page in a file of its own, by coder."""
    jbig = sets.jbig_sizes()
    return {
        "png (1 bit per pixel)": {k: _pillow(v, "1", "PNG", optimize=True) for k, v in named.items()},
        "webp lossless": {k: _pillow(v, "L", "WEBP", lossless=True, quality=100, method=6) for k, v in named.items()},
        "jpeg xl lossless": {k: len(imagecodecs.jpegxl_encode(v, lossless=True, effort=7)) for k, v in named.items()},
        "jbig": {k: jbig[k] for k in named},
    }


def ours(named: dict[str, np.ndarray], preset: str) -> dict[str, Any]:
    """latentzip's lossless files: one for all pages, one per page, and the model's own code."""
    codec = load_model(preset)
    images = list(named.values())
    started = time.perf_counter()
    blob = codec.encode(images, list(named), max_error=0)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    back = codec.decode(blob)
    decode_seconds = time.perf_counter() - started
    if not all(np.array_equal(a, b) for a, b in zip(images, back)):
        raise SystemExit("a lossless file did not give its page back")
    each = {}
    for name, page in named.items():
        single = codec.encode([page], [name], max_error=0)
        if not np.array_equal(codec.decode(single)[0], page):
            raise SystemExit(f"the lossless file of {name} did not give it back")
        each[name] = len(single)
    model = codec.code_bits(images, max_error=0) / 8
    return {"one_file_bytes": len(blob), "coded_directly": sum(file_catalog(blob).direct or ()),
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds, "per_page": each,
            "model_code_bytes": dict(zip(named, model.round().astype(int).tolist()))}


def graphics(name: str, count: int, preset: str) -> dict[str, Any]:
    """One lossless latentzip file of the set's first `count` test images, and the peers'."""
    found = sorted((sets.prepare(name) / "test").glob("*.png"))[:count]
    images = [np.asarray(Image.open(path).convert("RGBA")) for path in found]
    codec = load_model(preset)
    blob = codec.encode(images, max_error=0)
    for image, back in zip(images, codec.decode(blob)):
        shown = image[..., 3] > 0
        if not (np.array_equal(back[..., 3], image[..., 3]) and np.array_equal(back[shown], image[shown])):
            raise SystemExit(f"a lossless file of {name} did not give an image back")
    return {"images": len(images), "latentzip": len(blob), "coded_directly": sum(file_catalog(blob).direct or ()),
            "model_code": round(float(codec.code_bits(images, max_error=0).sum() / 8)),
            "png": sum(_pillow(im, "RGBA", "PNG", optimize=True) for im in images),
            "webp lossless": sum(_pillow(im, "RGBA", "WEBP", lossless=True, quality=100, method=6) for im in images),
            "jpeg xl lossless": sum(len(imagecodecs.jpegxl_encode(im, lossless=True, effort=7)) for im in images)}


def markdown(result: dict[str, Any]) -> str:
    names = list(result["latentzip"]["per_page"])
    rows = ["| coder | " + " | ".join(names) + " | all pages | vs JBIG |", "|---" * (len(names) + 3) + "|"]
    jbig = sum(result["peers"]["jbig"].values())

    def row(label: str, sizes: dict[str, float], total: float | None = None) -> str:
        total = sum(sizes.values()) if total is None else total
        cells = " | ".join(f"{sizes[k]:,.0f}" for k in names)
        return f"| {label} | {cells} | {total:,.0f} | {total / jbig:.2f}x |"

    ours_ = result["latentzip"]
    rows.append(row(f"**latentzip** `{result['preset']}` `--max-error 0`, a file per page", ours_["per_page"]))
    rows.append(row("**latentzip**, the eight pages in one file", {k: float("nan") for k in names},
                    ours_["one_file_bytes"]).replace("| nan ", "| – "))
    rows.append(row("the model's own lossless code (model and refinement layer)", ours_["model_code_bytes"]))
    for coder, sizes in result["peers"].items():
        rows.append(row(SHOWN[coder], sizes))
    rows += ["", "| set | images | **latentzip**, one file | coded directly | the model's own lossless code | PNG | "
             "WebP lossless | JPEG XL lossless |", "|---|---|---|---|---|---|---|---|"]
    for name, found in result["graphics"].items():
        sizes = [found[k] for k in ("latentzip", "model_code", "png", "webp lossless", "jpeg xl lossless")]
        cells = [f"{size:,} ({size / found['latentzip']:.2f}x)" for size in sizes]
        rows.append(f"| {name} | {found['images']} | {cells[0].split(' ')[0]} | {found['coded_directly']} | "
                    + " | ".join(cells[1:]) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    named = pages()
    result: dict[str, Any] = {"benchmark": "scans", "command": common.command_line(SCRIPT, argv),
                              "date": common.now(), "commit": common.git_commit(),
                              "machine": common.machine(("torch", "numpy", "imagecodecs", "Pillow")),
                              "preset": args.preset, "pages": {k: list(v.shape) for k, v in named.items()},
                              "latentzip": ours(named, args.preset), "peers": peers(named),
                              "graphics": {name: graphics(name, args.graphics, args.preset) for name in ("emoji", "icons")}}
    common.write_json(args.out, result)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
