"""CompressAI's side of bench/learned_peer.py: it runs in that benchmark's throwaway venv
(torch and CompressAI, no latentzip), so CompressAI's pins never meet the project's.

    python compressai_worker.py train --pieces DIR --lmbda L --minutes M --out MODEL.pt
    python compressai_worker.py code --model MODEL.pt --photos DIR --out DIR

`train` fits one of Ballé et al.'s 2018 models (CompressAI's bmshj2018 factorized or
scale hyperprior, N=128 and M=192 as its lower qualities use) to one lmbda, from scratch,
for a wall-clock budget, with CompressAI's recipe: random crops with horizontal flips,
the loss lmbda * 255^2 * MSE + bits per pixel, Adam, an auxiliary Adam on the entropy
bottleneck's quantiles, and gradients clipped at norm 1. It prints one JSON line per
hundred steps and a last one with the totals.

`code` writes one real file per photograph (PNG in, padded by edge replication to
sides that are multiples of the network's stride, 64 for the hyperprior, 16 for the
factorized prior): the height and width, then each of CompressAI's
strings behind its 4-byte length. It decodes that file, crops the padding off, writes
the pixels as PNG, and prints one JSON line per photograph: bytes, encode and decode
seconds (after a warm-up call on the first photograph).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ARCHITECTURES = ("factorized", "hyperprior")
N, M = 128, 192
REPORT_EVERY = 100


def network(architecture: str) -> torch.nn.Module:
    from compressai.models import FactorizedPrior, ScaleHyperprior

    return ScaleHyperprior(N, M) if architecture == "hyperprior" else FactorizedPrior(N, M)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    pieces = [read(p) for p in sorted(args.pieces.glob("*.png"))]
    usable = [p for p in pieces if min(p.shape[:2]) >= args.crop]
    model = network(args.architecture)
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=args.lr), torch.optim.Adam(aux, lr=1e-3)
    started, step, totals = time.perf_counter(), 0, np.zeros(3)
    while time.perf_counter() - started < args.minutes * 60:
        crops = []
        for _ in range(args.batch):
            image = usable[rng.integers(len(usable))]
            top, left = rng.integers(image.shape[0] - args.crop + 1), rng.integers(image.shape[1] - args.crop + 1)
            crop = image[top : top + args.crop, left : left + args.crop]
            crops.append(crop[:, ::-1] if rng.integers(2) else crop)
        x = torch.from_numpy(np.stack(crops).astype(np.float32) / 255).permute(0, 3, 1, 2)
        out = model(x)
        bpp = sum(torch.log(v).sum() for v in out["likelihoods"].values()) / (-np.log(2) * x.numel() / 3)
        mse = F.mse_loss(out["x_hat"], x)
        loss = args.lmbda * 255**2 * mse + bpp
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        optimizer.step()
        model.aux_loss().backward()
        aux_optimizer.step()
        step += 1
        totals += (loss.item(), bpp.item(), mse.item())
        if step % REPORT_EVERY == 0:
            loss_, bpp_, mse_ = totals / REPORT_EVERY
            print(json.dumps({"step": step, "seconds": round(time.perf_counter() - started, 1), "loss": loss_,
                              "bpp": bpp_, "psnr": float(10 * np.log10(1 / mse_))}), flush=True)
            totals[:] = 0
    model.update(force=True)
    torch.save({"architecture": args.architecture, "state": model.state_dict()}, args.out)
    print(json.dumps({"steps": step, "seconds": round(time.perf_counter() - started, 1), "lmbda": args.lmbda,
                      "pieces": len(usable), "crop": args.crop, "batch": args.batch, "lr": args.lr,
                      "threads": torch.get_num_threads()}), flush=True)


def load(path: Path) -> torch.nn.Module:
    saved = torch.load(path)
    model = network(saved["architecture"])
    model.load_state_dict(saved["state"])
    model.update(force=True)
    return model.eval()


def stride(model: torch.nn.Module) -> int:
    """The network's total downsampling, to the side latents of the hyperprior or to the
    latents of the factorized prior: input sides must be multiples of it."""
    from compressai.models import ScaleHyperprior

    return 64 if isinstance(model, ScaleHyperprior) else 16


def latent_shape(model: torch.nn.Module, height: int, width: int) -> list[int]:
    """The height and width of the latents CompressAI's decompress starts from, derived
    from the image's as the file's header gives them."""
    down = stride(model)
    return [-(-height // down), -(-width // down)]


def encode(model: torch.nn.Module, image: np.ndarray) -> bytes:
    """One photograph's file: height and width, then each string behind its length."""
    height, width = image.shape[:2]
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    pad = stride(model)
    coded = model.compress(F.pad(x, (0, -width % pad, 0, -height % pad), mode="replicate"))
    return struct.pack(">HH", height, width) + b"".join(struct.pack(">I", len(s[0])) + s[0] for s in coded["strings"])


def decode(model: torch.nn.Module, blob: bytes) -> np.ndarray:
    """The pixels of a file `encode` wrote, from the file alone."""
    (height, width), rest, strings = struct.unpack(">HH", blob[:4]), blob[4:], []
    while rest:
        (size,) = struct.unpack(">I", rest[:4])
        strings.append([rest[4 : 4 + size]])
        rest = rest[4 + size :]
    x_hat = model.decompress(strings, latent_shape(model, height, width))["x_hat"][0, :, :height, :width]
    return (x_hat.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def code(args: argparse.Namespace) -> None:
    model = load(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = sorted(args.photos.glob("*.png"))
    with torch.no_grad():  # a warm-up call, so that no timing includes torch's first-call set-up
        decode(model, encode(model, read(paths[0])))
    for path in paths:
        image = read(path)
        with torch.no_grad():
            t0 = time.perf_counter()
            blob = encode(model, image)
            t1 = time.perf_counter()
            pixels = decode(model, blob)
            t2 = time.perf_counter()
        (args.out / f"{path.stem}.bin").write_bytes(blob)
        Image.fromarray(pixels).save(args.out / f"{path.stem}.png")
        print(json.dumps({"photo": path.stem, "bytes": len(blob), "encode_s": t1 - t0, "decode_s": t2 - t1}),
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train")
    fit.add_argument("--pieces", type=Path, required=True)
    fit.add_argument("--architecture", choices=ARCHITECTURES, default="hyperprior")
    fit.add_argument("--lmbda", type=float, required=True)
    fit.add_argument("--minutes", type=float, required=True)
    fit.add_argument("--crop", type=int, default=128)
    fit.add_argument("--batch", type=int, default=8)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", type=Path, required=True)
    run = commands.add_parser("code")
    run.add_argument("--model", type=Path, required=True)
    run.add_argument("--photos", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    (train if args.command == "train" else code)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
