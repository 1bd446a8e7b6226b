"""Training a colourisation network on colour images of any sizes.

Each step takes random crops of the colour images (every crop position of every image
equally likely, so a large photograph counts for its area; flipped left-right half the time),
converts them to CIELAB on the device, and teaches the network the crops' chroma (a, b)
from their lightness L, with a smooth L1 loss: the per-pixel median of plausible colours
rather than their mean, which a squared error pulls towards grey. Grey images teach no
colour and are left out; a set with no colour image is refused.

Every setting left as None is chosen from the images (`choose`): crops as large as most
images allow (up to CROP_MAX, on the network's stride), batches of about BATCH_PIXELS.
A time budget (`minutes`) runs as many steps as fit, with the learning rate decaying
over the time; a number of `steps` makes a run independent of the machine's speed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import LatentzipError
from ..image.train import check_images, pick_device
from .colornet import DEFAULT_WIDTHS, ColorNet, Colorizer, NetConfig
from .lab import is_grey, to_lab

CROP_MAX = 128
BATCH_PIXELS = 1 << 16  # pixels per batch: 4 crops of 128, 16 of 64
DEFAULT_STEPS = 2000  # without a time budget
SMOOTH = 2.0  # chroma error (CIELAB units) below which the loss is squared, above it linear
LOG_STEPS = 50  # the loss is recorded as the mean of this many steps


@dataclass
class ColorizeConfig:
    widths: tuple[int, ...] | None = None  # channels per level (None: colornet.DEFAULT_WIDTHS)
    crop: int | None = None  # side of the random crops (None: from the image sizes)
    batch_size: int | None = None  # None: BATCH_PIXELS worth of crops
    steps: int | None = None  # None: as many as `minutes` allows, DEFAULT_STEPS without minutes
    minutes: float | None = None  # time budget; the model is made when it runs out
    lr: float = 1e-3
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"  # "auto", "cpu", "cuda" or "mps"

    def __post_init__(self) -> None:
        for name in ("crop", "batch_size", "steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LatentzipError(f"{name.replace('_', ' ')} must be positive")
        if self.minutes is not None and not self.minutes > 0:
            raise LatentzipError("the time budget (minutes) must be positive")
        if not self.lr > 0:
            raise LatentzipError("the learning rate must be positive")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise LatentzipError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")
        if self.widths is not None:
            try:
                NetConfig.from_json({"widths": list(self.widths)})
            except ValueError as exc:
                raise LatentzipError(f"cannot train this network: {exc}") from None


@dataclass
class ColorizeResult:
    model: Colorizer
    config: ColorizeConfig  # what the run used, every setting chosen
    steps: int  # steps run
    seconds: float
    stopped_early: bool  # the time budget ran out before `config.steps`
    images: int  # colour images trained on
    left_out: int  # grey images, and images smaller than a crop


def usable(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The RGB of the colour images (alpha dropped); grey ones are refused when there is
    nothing else."""
    colour = [im[..., :3] for im in images if not is_grey(im)]
    if not colour:
        which = "the training image is" if len(images) == 1 else f"all {len(images)} training images are"
        raise LatentzipError(f"{which} grey: colourisation learns from colour images")
    return colour


def choose(cfg: ColorizeConfig, images: Sequence[np.ndarray]) -> ColorizeConfig:
    """`cfg` with every None filled in from the (colour) images."""
    widths = cfg.widths or DEFAULT_WIDTHS
    stride = NetConfig(tuple(widths)).stride
    sides = np.sort([min(im.shape[:2]) for im in images])
    side = min(CROP_MAX, int(sides[len(sides) // 10]))  # 90% of the images hold a crop
    crop = cfg.crop or (side // stride * stride if side >= stride else side)
    steps = cfg.steps if cfg.steps is not None or cfg.minutes is not None else DEFAULT_STEPS
    return replace(cfg, widths=tuple(widths), crop=crop, batch_size=cfg.batch_size or max(1, BATCH_PIXELS // crop**2),
                   steps=steps)


def train_colorizer(
    images: np.ndarray | Sequence[np.ndarray],
    cfg: ColorizeConfig | None = None,
    progress: bool = True,
    on_start: Callable[[ColorizeConfig, int, int, str], None] | None = None,
) -> ColorizeResult:
    """Train a colourisation network on uint8 images ((N, H, W, C) or a list of
    (H, W, C) of any sizes; the colour ones are used) and return it, ready to colour.

    `on_start` is called with the settings chosen, the number of images used and left
    out, and the device, once the run knows them."""
    began = time.monotonic()
    cfg = cfg or ColorizeConfig()
    given = check_images(images, least=1)
    colour = usable(given)
    cfg = choose(cfg, colour)
    crops = [im for im in colour if min(im.shape[:2]) >= cfg.crop]  # type: ignore[operator]
    if not crops:
        raise LatentzipError(f"no colour training image holds a {cfg.crop}x{cfg.crop} crop; use a smaller --crop")
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = ColorNet(NetConfig(cfg.widths)).to(device)  # type: ignore[arg-type]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if on_start is not None:
        on_start(cfg, len(crops), len(given) - len(crops), str(device))
    rng = np.random.default_rng(cfg.seed)
    positions = np.array([(im.shape[0] - cfg.crop + 1) * (im.shape[1] - cfg.crop + 1) for im in crops], np.float64)
    odds = positions / positions.sum()
    limit = None if cfg.minutes is None else cfg.minutes * 60
    losses: list[float] = []
    history: list[float] = []
    bar = tqdm(total=cfg.steps, desc="colorize", unit="step", disable=None if progress else True, leave=False)
    step, stopped = 0, False
    net.train()
    while cfg.steps is None or step < cfg.steps:
        elapsed = time.monotonic() - began
        if limit is not None and elapsed > limit:
            stopped = cfg.steps is not None
            break
        done = max(step / cfg.steps if cfg.steps else 0.0, elapsed / limit if limit else 0.0)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        lab = to_lab(_batch(crops, cfg, rng, device, odds))
        loss = F.smooth_l1_loss(net(lab[:, :1]), lab[:, 1:], beta=SMOOTH)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) == LOG_STEPS:
            history.append(float(np.mean(losses)))
            losses.clear()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    seconds = time.monotonic() - began
    record = {k: v for k, v in asdict(cfg).items() if k != "threads"}
    meta = {"train": record, "steps": step, "seconds": round(seconds, 1), "images": len(crops),
            "loss_every": LOG_STEPS, "loss": history}
    model = Colorizer.from_net(net.eval(), meta)
    return ColorizeResult(model, cfg, step, seconds, stopped, len(crops), len(given) - len(crops))


def _batch(images: list[np.ndarray], cfg: ColorizeConfig, rng: np.random.Generator, device: torch.device,
           odds: np.ndarray) -> torch.Tensor:
    """Random crops, half of them flipped, as RGB (B, 3, crop, crop) in [0, 1]; image i
    is picked with probability odds[i]."""
    crop = cfg.crop
    out = np.empty((cfg.batch_size, crop, crop, 3), np.uint8)  # type: ignore[arg-type]
    for k, i in enumerate(rng.choice(len(images), size=cfg.batch_size, p=odds)):
        h, w = images[i].shape[:2]
        top, left = rng.integers(h - crop + 1), rng.integers(w - crop + 1)  # type: ignore[operator]
        patch = images[i][top : top + crop, left : left + crop]  # type: ignore[operator]
        out[k] = patch[:, ::-1] if rng.integers(2) else patch
    return torch.from_numpy(out).to(device).permute(0, 3, 1, 2).float().div_(255.0)
