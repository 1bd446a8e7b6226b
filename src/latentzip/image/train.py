"""The rate-distortion training loop.

loss = bpp + lmbda * 255^2 * MSE (+ the variant's penalty). bpp is the rate the prior
estimates under additive uniform noise, per real pixel; MSE is on [0, 1] pixels, so
lmbda follows the convention of the learned-compression literature (bigger lmbda,
more bits, higher quality).

Every epoch ends with a validation pass and a checkpoint, so an interrupted run
resumes where it stopped; each epoch reseeds from (seed, epoch), so a resumed run
draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from ..errors import LatentzipError
from ..fsio import atomic_writer
from .codec import ImageCodec
from .model import Autoencoder
from .regularize import REGULARIZERS, contractive_penalty, corrupt, sparse_penalty
from .transforms import NetConfig, init_from_pca

DEFAULT_HIDDEN = {"dense": (64,), "deep": (512, 256), "vae": (512, 256), "conv": (64,)}
DEFAULT_REG_WEIGHT = {"none": 0.0, "sparse": 1e-3, "contractive": 1e-3}


@dataclass
class TrainConfig:
    arch: str = "conv"
    latent: int = 32
    hidden: tuple[int, ...] | None = None  # layer widths (dense) or channels (conv); None = per arch
    levels: int = 2  # conv only: downsampling steps, each a factor of 2
    reg: str = "none"
    reg_weight: float | None = None  # None = the default for `reg`
    noise: float = 0.0  # denoising: corruption level while training
    noise_kind: str = "gaussian"
    beta: float = 1e-3  # VAE only: weight of the KL term
    lmbda: float = 0.01
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    minutes: float | None = None  # stop (and still write the model) after this long
    val_fraction: float = 0.1
    pca_gain: float | None = 4.0  # dense: start from PCA, step 1/gain per coefficient; None = random start
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.reg not in REGULARIZERS:
            raise LatentzipError(f"unknown regularizer {self.reg!r}; choose one of {', '.join(REGULARIZERS)}")
        if self.hidden is None:
            self.hidden = DEFAULT_HIDDEN.get(self.arch, (64,))
        if self.reg_weight is None:
            self.reg_weight = DEFAULT_REG_WEIGHT[self.reg]
        if self.latent < 1 or self.epochs < 1 or self.batch_size < 1:
            raise LatentzipError("latent, epochs and batch size must be positive")

    def net(self, images: np.ndarray) -> NetConfig:
        n, h, w, c = images.shape
        try:
            return NetConfig(self.arch, self.latent, c, h, w, tuple(self.hidden or ()), self.levels)
        except ValueError as exc:
            raise LatentzipError(str(exc)) from None


@dataclass
class EpochStats:
    epoch: int
    loss: float
    bpp: float
    psnr: float
    val_loss: float
    val_bpp: float
    val_psnr: float
    seconds: float


@dataclass
class TrainResult:
    codec: ImageCodec
    history: list[EpochStats] = field(default_factory=list)
    stopped_early: bool = False


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def _losses(model: Autoencoder, x: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, float, float]:
    """(loss, bpp, psnr) of one batch; the input is corrupted first for denoising."""
    noisy = corrupt(x, cfg.noise, cfg.noise_kind)
    if cfg.reg == "contractive":
        noisy = noisy.detach().requires_grad_(True)
    out = model(noisy)
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    bpp = -torch.log2(out.likelihoods).sum() / pixels
    mse = torch.mean((out.x_hat - x) ** 2)
    loss = bpp + cfg.lmbda * 255.0**2 * mse
    if cfg.reg == "sparse":
        loss = loss + cfg.reg_weight * sparse_penalty(out.y)
    elif cfg.reg == "contractive":
        loss = loss + cfg.reg_weight * contractive_penalty(noisy, out.y)
    if out.kl is not None:
        loss = loss + cfg.beta * out.kl / (x.shape[-2] * x.shape[-1])
    psnr = float(10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10)))
    return loss, float(bpp.detach()), psnr


def _save_checkpoint(path: Path, model: Autoencoder, opt: torch.optim.Optimizer, epoch: int, cfg: TrainConfig) -> None:
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"opt.{i}.{key}"] = value.detach().reshape(-1) if value.dim() == 0 else value.contiguous()
    meta = {"epoch": str(epoch), "config": json.dumps(asdict(cfg))}
    with atomic_writer(path) as handle:
        handle.write(save(tensors, metadata=meta))


def _load_checkpoint(path: Path, model: Autoencoder, opt: torch.optim.Optimizer) -> int:
    """Restore model and optimizer; return the last finished epoch."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise LatentzipError(f"cannot resume from {path}: {exc}") from None
    state = opt.state_dict()
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, i, key = name.split(".", 2)
            slot = state["state"].setdefault(int(i), {})
            slot[key] = value.reshape(()) if key == "step" else value
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError):
        raise LatentzipError(f"checkpoint {path} was made with other settings; train again without --resume") from None
    return int(meta.get("epoch", "0"))


def split(images: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(validation, fit) images, the split `train` makes: seeded by cfg.seed, so it can
    be made again (to refit a trained model's refinement tables, for instance)."""
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    n_val = min(max(1, int(round(len(images) * cfg.val_fraction))), len(images) - 1)
    return images[order[:n_val]], images[order[n_val:]]


def train(
    images: np.ndarray,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train a codec on uint8 images (N, H, W, C) and return it frozen, ready to code.

    `on_epoch` is called after each epoch's checkpoint is written (for progress reports
    of callers; an exception it raises stops training with the checkpoint in place)."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise LatentzipError("training images must be a uint8 array of shape (N, H, W, C)")
    if len(images) < 2:
        raise LatentzipError("need at least 2 training images")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    val, fit = split(images, cfg)

    model = Autoencoder(cfg.net(images))
    if model.cfg.dense and cfg.pca_gain is not None:
        _start_from_pca(model, fit, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(fit) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    ckpt = Path(checkpoint) if checkpoint else None
    start = 0
    if resume:
        if ckpt is None or not ckpt.exists():
            raise LatentzipError(f"nothing to resume: checkpoint {ckpt} does not exist")
        start = _load_checkpoint(ckpt, model, opt)

    history: list[EpochStats] = []
    stopped_early = False
    began = time.monotonic()
    x_val = _to_tensor(val)
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(len(fit))
        model.train()
        sums = np.zeros(3)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        t0 = time.monotonic()
        for step in bar:
            # Cosine decay, a function of the global step alone, so resuming needs no state.
            done_fraction = (epoch * steps_per_epoch + step) / total_steps
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * done_fraction))
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size].numpy()
            loss, bpp, psnr = _losses(model, _to_tensor(fit[idx]), cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sums += (loss.item(), bpp, psnr)
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}")
            if cfg.minutes is not None and time.monotonic() - began > cfg.minutes * 60:
                stopped_early = True
                break
        bar.close()
        done = step + 1
        vloss, vbpp, vpsnr = _validate(model, x_val, cfg)
        stats = EpochStats(epoch + 1, *(sums / done), vloss, vbpp, vpsnr, time.monotonic() - t0)
        history.append(stats)
        if progress:
            tqdm.write(
                f"epoch {stats.epoch}/{cfg.epochs}  loss {stats.loss:.4f}  bpp {stats.bpp:.3f}  "
                f"psnr {stats.psnr:.2f} dB | val loss {vloss:.4f}  bpp {vbpp:.3f}  psnr {vpsnr:.2f} dB  "
                f"({stats.seconds:.0f}s)"
            )
        if stopped_early:
            break  # a partial epoch is not checkpointed: --resume redoes it
        if ckpt is not None:
            _save_checkpoint(ckpt, model, opt, epoch + 1, cfg)
        if on_epoch is not None:
            on_epoch(stats)

    model.eval()
    codec = ImageCodec.from_model(model, meta={"train": asdict(cfg), "history": [asdict(h) for h in history]})
    codec = codec.with_refinement(fit)  # fitted on training images only, never on validation
    return TrainResult(codec, history, stopped_early)


def _start_from_pca(model: Autoencoder, images: np.ndarray, cfg: TrainConfig) -> None:
    """Fit PCA on (up to 10,000 of) the training images and make it the linear path."""
    from sklearn.decomposition import PCA

    flat = images[:10_000].reshape(min(len(images), 10_000), -1).astype(np.float32) / 255.0
    k = min(model.cfg.latent, *flat.shape)
    pca = PCA(n_components=k, svd_solver="randomized", random_state=cfg.seed).fit(flat)
    init_from_pca(
        model.analysis, model.synthesis,
        torch.from_numpy(pca.components_).float(), torch.from_numpy(pca.mean_).float(), cfg.pca_gain,
    )


@torch.no_grad()
def _validate(model: Autoencoder, x: torch.Tensor, cfg: TrainConfig, batch: int = 1000) -> tuple[float, float, float]:
    """Validation loss, estimated bpp and PSNR with rounded latents, as when coding."""
    model.eval()
    bits, sq, psnr_sum, n_img = 0.0, 0.0, 0.0, 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        y = model.analyse(xb)
        bits += float(-torch.log2(model.prior.likelihood(y)).sum())
        x_hat = model.synthesise(y, xb.shape[-2:])
        per_image = ((x_hat - xb) ** 2).flatten(1).mean(1)
        sq += float(per_image.sum())
        psnr_sum += float((10 * torch.log10(1.0 / per_image.clamp_min(1e-10))).sum())
        n_img += len(xb)
    pixels = n_img * x.shape[-2] * x.shape[-1]
    bpp = bits / pixels
    mse = sq / n_img
    return bpp + cfg.lmbda * 255.0**2 * mse, bpp, psnr_sum / n_img
