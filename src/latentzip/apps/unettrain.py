"""Training the U-Net of an image-to-image task on images of any sizes.

Each step takes random crops of the training images (an image picked with odds of its
area, then a crop position in it, so that every image counts for its pixels; flipped
left-right half the time) and hands them to the task's loss (colourisation:
colortrain.py, watermark removal: marktrain.py). Odds of the crop positions instead
would all but drop the images the size of a crop: one position each, against tens of
thousands in a photograph.

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
from tqdm.auto import tqdm

from ..errors import LatentzipError
from ..image.train import pick_device
from .unet import DEFAULT_WIDTHS, NetConfig, UNet, UNetModel

CROP_MAX = 128
BATCH_PIXELS = 1 << 16  # pixels per batch: 4 crops of 128, 16 of 64
DEFAULT_STEPS = 2000  # without a time budget
LOG_STEPS = 50  # the loss is recorded as the mean of this many steps

# A task's loss: (network, crops (B, 3, crop, crop) in [0, 1] on the device, generator).
Loss = Callable[[UNet, torch.Tensor, np.random.Generator], torch.Tensor]


@dataclass
class UNetTrainConfig:
    widths: tuple[int, ...] | None = None  # channels per level (None: unet.DEFAULT_WIDTHS)
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
class UNetTrainResult:
    model: UNetModel
    config: UNetTrainConfig  # what the run used, every setting chosen
    steps: int  # steps run
    seconds: float
    stopped_early: bool  # the time budget ran out before `config.steps`
    images: int  # images trained on
    left_out: int  # images the task cannot learn from, and images smaller than a crop


def choose(cfg: UNetTrainConfig, images: Sequence[np.ndarray]) -> UNetTrainConfig:
    """`cfg` with every None filled in from the images."""
    widths = cfg.widths or DEFAULT_WIDTHS
    stride = NetConfig(tuple(widths)).stride
    sides = np.sort([min(im.shape[:2]) for im in images])
    side = min(CROP_MAX, int(sides[len(sides) // 10]))  # 90% of the images hold a crop
    crop = cfg.crop or (side // stride * stride if side >= stride else side)
    steps = cfg.steps if cfg.steps is not None or cfg.minutes is not None else DEFAULT_STEPS
    return replace(cfg, widths=tuple(widths), crop=crop, batch_size=cfg.batch_size or max(1, BATCH_PIXELS // crop**2),
                   steps=steps)


def train_unet(
    model: type[UNetModel],
    images: Sequence[np.ndarray],
    given: int,
    cfg: UNetTrainConfig,
    loss: Loss,
    progress: bool = True,
    on_start: Callable[[UNetTrainConfig, int, int, str], None] | None = None,
    extra: dict | None = None,
    clip: float | None = None,
) -> UNetTrainResult:
    """Train `model`'s network on RGB uint8 `images` (those the task learns from, out of
    `given`) with the task's `loss`, and return it; `extra` joins its training record,
    and `clip` bounds the gradient's norm at each step.

    `on_start` is called with the settings chosen, the number of images used and left
    out, and the device, once the run knows them."""
    began = time.monotonic()
    cfg = choose(cfg, images)
    crops = [im for im in images if min(im.shape[:2]) >= cfg.crop]  # type: ignore[operator]
    if not crops:
        raise LatentzipError(f"no training image holds a {cfg.crop}x{cfg.crop} crop; use a smaller --crop")
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = model.NET(NetConfig(cfg.widths)).to(device)  # type: ignore[arg-type]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if on_start is not None:
        on_start(cfg, len(crops), given - len(crops), str(device))
    rng = np.random.default_rng(cfg.seed)
    odds = _odds(crops)
    limit = None if cfg.minutes is None else cfg.minutes * 60
    losses: list[float] = []
    history: list[float] = []
    bar = tqdm(total=cfg.steps, desc=model.KIND.noun, unit="step", disable=None if progress else True, leave=False)
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
        value = loss(net, _batch(crops, cfg, rng, device, odds), rng)
        opt.zero_grad(set_to_none=True)
        value.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        losses.append(value.item())
        if len(losses) == LOG_STEPS:
            history.append(float(np.mean(losses)))
            losses.clear()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{value.item():.4g}")
    bar.close()
    seconds = time.monotonic() - began
    record = {k: v for k, v in asdict(cfg).items() if k != "threads"} | (extra or {})
    meta = {"train": record, "steps": step, "seconds": round(seconds, 1), "images": len(crops),
            "loss_every": LOG_STEPS, "loss": history}
    trained = model.from_net(net.eval(), meta)
    return UNetTrainResult(trained, cfg, step, seconds, stopped, len(crops), given - len(crops))


def _odds(images: Sequence[np.ndarray]) -> np.ndarray:
    """Each image's odds of giving a crop: its share of the pixels."""
    areas = np.array([im.shape[0] * im.shape[1] for im in images], np.float64)
    return areas / areas.sum()


def _batch(images: list[np.ndarray], cfg: UNetTrainConfig, rng: np.random.Generator, device: torch.device,
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
