"""Rate against distortion for latentzip and the classical codecs, and their speeds.

All codecs code the same test images in this run. Bytes are counted two ways, because
headers dominate small images: whole files (what a user stores), and payload only (the
coded image data, container and headers left out). latentzip has two whole-file figures:
one file per image, as the other formats store them, and one file for all images,
where its header and catalog are shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .. import baselines
from ..image import zoo
from . import figures
from .autoencoders import measure
from .section import Context, Figure, Section, Table, num

PCA_SIZES = (4, 8, 16, 32, 64, 128)
REFINE_BOUNDS = (32, 16, 8)


def _baseline_points(ctx: Context, images: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = {}
    for name, codec in baselines.IMAGE_BASELINES.items():
        if ctx.progress:
            tqdm.write(f"  sweeping {name}")
        points[name] = baselines.sweep(codec, images, progress=ctx.progress)
    ks = [k for k in PCA_SIZES if k <= min(len(ctx.inputs.train), ctx.inputs.dims)]
    points["pca"] = baselines.pca_sweep(ctx.inputs.train[:10_000], images, ks)
    return points


def _latentzip_points(ctx: Context, images: np.ndarray) -> dict[str, dict[str, Any]]:
    models = dict(ctx.shared.get("models", {}))
    for name in zoo.names():
        if name.split(":")[0] == ctx.inputs.spec:  # shipped models of this very data set
            models[f"shipped {name}"] = zoo.load(name)
    points = {}
    for name, codec in models.items():
        points[name], _ = measure(codec, images)
    refined = ctx.shared.get("refined")  # the model also measured with its refinement layer
    for name in [refined] if refined in models else []:
        for bound in REFINE_BOUNDS:
            points[f"{name} max-error {bound}"], _ = measure(models[name], images, max_error=bound)
    return points


def rate_distortion(ctx: Context) -> Section:
    images = ctx.inputs.test[: ctx.budget.codec_images]
    ours = _latentzip_points(ctx, images)
    theirs = _baseline_points(ctx, images)
    reference = float(np.median([p["psnr"] for p in ours.values()]))
    closest = {name: min(pts, key=lambda p: abs(p["psnr"] - reference)) for name, pts in theirs.items()}
    ctx.shared["rd"] = (ours, closest, reference)
    rows = [
        [f"latentzip {name}", "–", num(p["single_file_bytes"], 1), num(p["bytes_per_image"], 1),
         num(p["payload_bytes_per_image"], 1), num(p["psnr"]), num(p["ssim"], 3)]
        for name, p in sorted(ours.items(), key=lambda item: item[1]["bytes_per_image"])
    ] + [
        [name, "–" if p["quality"] is None else f"{p['quality']:g}", num(p["bytes_per_image"], 1), "–",
         num(p["payload_bytes_per_image"], 1), num(p["psnr"]), num(p["ssim"], 3)]
        for name, p in closest.items()
    ]
    return Section(
        "rate_distortion",
        "Rate and distortion against classical codecs",
        f"Every codec codes the same {len(images):,} test images. latentzip: the models trained above"
        + (" and the shipped ones" if any(n.startswith("shipped") for n in ours) else "")
        + (f", the deep one also with its refinement layer (no pixel off by more than "
           f"{', '.join(map(str, REFINE_BOUNDS))} grey levels)" if any("max-error" in n for n in ours) else "")
        + "; JPEG, WebP, AVIF, JPEG XL at a sweep of qualities, PNG as the lossless point, and PCA "
        "(float16 coefficients) at several sizes.",
        {
            "images": len(images),
            "latentzip": ours,
            "baselines": theirs,
            "reference_psnr": reference,
            "notes": [
                "whole-file bytes of the classical formats are one file per image, headers included",
                "payload bytes leave out headers and containers; JPEG XL's header is bit-packed into its "
                "codestream, so it has no payload figure",
                "PCA stores 2 bytes per coefficient and no header: its whole file is its payload",
            ],
        },
        [Table(
            ["codec", "quality", "bytes/image, file per image", "bytes/image, one file for all",
             "payload bytes/image", "PSNR dB", "SSIM"],
            rows,
            f"latentzip models, and each classical codec at its quality closest to {reference:.1f} dB.",
        )],
        [
            Figure("rate-distortion-psnr.png", _plot(ours, theirs, "psnr", "PSNR (dB, mean over images)"),
                   "Bytes per image against PSNR: whole files (left) and payload only (right). PNG is "
                   "lossless (no finite PSNR) and appears in the table and the SSIM plot only."),
            Figure("rate-distortion-ssim.png", _plot(ours, theirs, "ssim", "SSIM (mean over images)"),
                   "Bytes per image against SSIM: whole files (left) and payload only (right)."),
        ],
        _findings(ours, closest, reference),
    )


def _plot(ours: dict[str, dict[str, Any]], theirs: dict[str, list[dict[str, Any]]], metric: str, label: str) -> bytes:
    def line(name: str, pts: list[dict[str, Any]], key: str, style: dict | None = None) -> figures.Series | None:
        pts = sorted((p for p in pts if p[key] is not None), key=lambda p: p[key])
        if not pts:
            return None
        return figures.Series(name, [p[key] for p in pts], [p[metric] for p in pts], style or {})

    stars = {"marker": "*", "ms": 10, "linestyle": "none", "color": "black"}
    if metric == "psnr":  # a lossless codec has no finite PSNR: it stays in the table only
        theirs = {name: pts for name, pts in theirs.items() if name != "png"}
    panels = []
    for title, key_theirs, ours_keys in (
        ("whole files", "bytes_per_image",
         (("latentzip, file per image", "single_file_bytes", stars),
          ("latentzip, one file for all", "bytes_per_image", {**stars, "color": "tab:gray"}))),
        ("payload only", "payload_bytes_per_image", (("latentzip", "payload_bytes_per_image", stars),)),
    ):
        series = [line(name, pts, key_theirs) for name, pts in theirs.items()]
        series += [line(name, list(ours.values()), key, style) for name, key, style in ours_keys]
        panels.append(figures.Axes([s for s in series if s is not None], "bytes per image (log scale)",
                                   label, title, xlog=True))
    return figures.plot(panels)


def _findings(ours: dict[str, dict[str, Any]], closest: dict[str, dict[str, Any]], reference: float) -> list[str]:
    lossy = {n: p for n, p in closest.items() if n not in ("png", "pca")}
    best_name, best = min(
        ((n, p) for n, p in ours.items() if p["psnr"] >= reference - 0.5),
        key=lambda item: item[1]["single_file_bytes"],
    )
    text = [
        f"The smallest latentzip file holding one image at {reference - 0.5:.1f} dB or more: {best_name}, "
        f"{best['single_file_bytes']:.0f} bytes at {best['psnr']:.2f} dB. The classical codecs at their quality "
        f"closest to {reference:.1f} dB: "
        + "; ".join(f"{n} {p['bytes_per_image']:.0f} bytes ({p['psnr']:.2f} dB)" for n, p in lossy.items())
        + "."
    ]
    headers = {n: p["bytes_per_image"] - p["payload_bytes_per_image"] for n, p in lossy.items()
               if p["payload_bytes_per_image"] is not None}
    if headers:
        text.append(
            "Headers and containers alone cost "
            + ", ".join(f"{n} {h:.0f}" for n, h in headers.items())
            + f" bytes per file; latentzip's one-image file carries "
            f"{best['single_file_bytes'] - best['payload_bytes_per_image']:.0f} bytes besides its payload."
        )
    return text


# --- 7. speed ---------------------------------------------------------------------------


def speed(ctx: Context) -> Section:
    ours, closest, reference = ctx.shared["rd"]
    rows_data: list[tuple[str, str, dict[str, Any]]] = [
        (f"latentzip {name}", "–", {
            "psnr": p["psnr"], "encode_s": p["encode_seconds"], "decode_s": p["decode_seconds"], "images": p["images"],
        })
        for name, p in ours.items()
    ]
    for name, p in closest.items():
        rows_data.append((name, "–" if p["quality"] is None else f"{p['quality']:g}", p))
    results = {
        name: {
            "setting": setting,
            "psnr": p["psnr"],
            "images": p["images"],
            "encode_images_per_s": p["images"] / p["encode_s"],
            "decode_images_per_s": p["images"] / p["decode_s"],
        }
        for name, setting, p in rows_data
    }
    names = list(results)
    plot = figures.bars(
        names,
        {
            "encode": [results[n]["encode_images_per_s"] for n in names],
            "decode": [results[n]["decode_images_per_s"] for n in names],
        },
        "images per second (log scale)",
        "encode and decode speed, same images, same run",
        log=True,
    )
    rows = [
        [n, r["setting"], num(r["psnr"]), num(r["encode_images_per_s"], 0), num(r["decode_images_per_s"], 0)]
        for n, r in results.items()
    ]
    return Section(
        "speed",
        "Speed",
        f"Encode and decode throughput on the same {rows_data[0][2]['images']:,} images in this run, "
        f"on this machine's CPU; classical codecs at their quality closest to {reference:.1f} dB. Whole-batch "
        "wall time, one process; the autoencoders code all images in one file, the others one file each.",
        {"reference_psnr": reference, "codecs": results},
        [Table(["codec", "quality", "PSNR dB", "encode images/s", "decode images/s"], rows)],
        [Figure("speed.png", plot, "Images per second, encode and decode (log scale).")],
    )
