"""The rate-distortion training loop.

loss = bits per pixel + lmbda * 255^2 * MSE (+ the variant's penalty). The rate is
what the latent codec estimates under additive uniform noise, per real pixel; MSE is
on [0, 1] pixels (colour errors weighted by alpha where there is alpha: what shows),
so lmbda follows the learned-compression literature (bigger lmbda, more bits, higher
quality). A model with a quality ladder trains one lmbda per quality, a different
quality each step.

`latentzip train --data DIR -o M` alone should give a good codec for that collection,
so every setting left as None is chosen from the images and the time budget
(`choose`): the architecture from the image size, the latent size from the block
size, the batch and crop from the image sizes, the number of steps from a measured
step time. Dense models start from PCA and convolutional ones from a block KLT, so a
codec is at a good linear code's quality at step zero and training improves on it.
Better still, a colour or grey convolutional model whose network is the shipped photo
model's starts from that model (`TrainConfig.start`): hours of training on photographs
that fifteen minutes on a collection then fit to it. So do collections with alpha, the
photo network grown an alpha channel: the network codes their colour, and the alpha
coder (alpha.py) codes alpha within its bound whatever the network says, so alpha
errors of the network cost nothing.

Every epoch ends with a validation pass and a checkpoint, so an interrupted run
resumes where it stopped; each epoch reseeds from (seed, epoch), so a resumed run
draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import windows
from ..data import mismatch
from ..errors import LatentzipError, printable
from ..fsio import atomic_writer
from . import transparent, zoo
from .codec import ImageCodec, covering_channels
from .model import Autoencoder
from .objective import distortion, lmbdas
from .ranks import Ranks, join, leave
from .regularize import NOISES, REGULARIZERS, contractive_penalty, corrupt, sparse_penalty
from .transforms import ARCHS, NetConfig, check_config, init_from_pca, init_linear

DEFAULT_HIDDEN = {"dense": (64,), "deep": (512, 256), "vae": (512, 256), "conv": (96,)}
DEFAULT_REG_WEIGHT = {"none": 0.0, "sparse": 1e-3, "contractive": 1e-3}
# Grey images of one size up to this many pixels train a dense model by default; colour
# and alpha ones a convolutional model at any size (the benchmark's 32x32 icons, 15
# minutes: 0.46x WebP's bytes where a deep dense model took 0.81x; at 16x16 in a scratch
# run, 0.32x against 0.46x). On Fashion-MNIST a conv model took 0.47x against the dense
# model's 0.41x and could not reach its 35 bytes at 25 dB (scratch run).
DENSE_MAX_PIXELS = 32 * 32
TRAIN_MAX_PIXELS = 1 << 28  # pixels a training set holds in memory, at most (256 MiB per channel); see windows.py
CROP_MAX = 128  # convolutional models train on random crops of at most this side
BATCH_PIXELS = 1 << 16  # pixels per convolutional batch: 4 crops of 128, 16 of 64
EPOCH_STEPS = 100  # a convolutional epoch: a crop of every image on average, at least this many steps
LADDER_LMBDA = 0.3  # the top quality's lmbda; each quality below takes LADDER_RATIO less
LADDER_QUALITIES = 6
KLT_BLOCKS = 20_000
START_CROPS = 128  # crops whose latents start a factorized prior on a trained start (the first batches')
MAX_FIT_PIXELS = 1 << 22  # pixels the refinement tables are fitted on, at most (conv)
FIT_SIDE = 512  # conv: the refinement tables are fitted on centre crops of this side, at most
VALIDATION_IMAGES = 64
# A conv run on fewer images than this cuts them into pieces before the split
# (windows.pieces): whole images would leave one of two for validation, and one none.
SPLIT_IMAGES = 10
VALIDATION_SIDE = 256  # validation images are centre-cropped to this side, at most
# A convolutional model's transforms start as a block KLT that is already a good codec;
# at the full rate Adam's steps shake it more than minutes of training repair, worst at
# the top qualities, whose quantizer is finest (textures, 4 minutes: 18-31% fewer bits
# at 36-40 dB with a tenth of the rate; a fiftieth cost 4-6% more than a tenth).
TRANSFORM_LR_SCALE = 0.1
PRETRAINED = "photo"  # the shipped models whose network a colour or grey conv model starts from, where it fits
LINEAR = "linear"  # TrainConfig.start of a network that starts as a linear code (KLT; dense: PCA)
# A time budget keeps for the end of the run (fitting refinement tables, measuring
# presets) at least CLOCK_RESERVE of itself; a convolutional model keeps FINISH_MARGIN
# times what its end is timed to take, when that is more.
CLOCK_RESERVE = 0.08
FINISH_MARGIN = 1.25
FINISH_SAMPLE_PIXELS = 1 << 17  # validation pixels the end is timed on (enough that per-call costs fade)


@dataclass
class TrainConfig:
    arch: str | None = None  # None: dense ("deep") for small grey images of one size, else conv
    latent: int | None = None  # None: per arch (32 dense; conv: C*s*s, every value of a block)
    hidden: tuple[int, ...] | None = None  # layer widths (dense) or channels (conv); None = per arch
    levels: int | None = None  # conv only: downsampling steps, each a factor of 2 (None: from the image size, at most 4)
    prior: str | None = None  # "factorized" or "hyperprior" (None: hyperprior for conv)
    qualities: int | None = None  # conv: rungs of the quality ladder (None: 6, or 1 with --lmbda)
    slices: int = 4  # hyperprior: groups of latents, each conditioned on those before (1: plain hyperprior;
    # never more groups than latents)
    context: bool = True  # hyperprior: means, and each slice coded in two checkerboard passes (latents.ContextLatents)
    reg: str = "none"
    reg_weight: float | None = None  # None = the default for `reg`
    noise: float = 0.0  # denoising: corruption level while training
    noise_kind: str = "gaussian"
    beta: float = 1e-3  # VAE only: weight of the KL term
    lmbda: float | None = None  # None: 0.01 (dense); conv: the top quality's (LADDER_LMBDA)
    epochs: int | None = None  # None: as many as `minutes` allows, 10 without minutes
    batch_size: int | None = None  # None: 128 (dense), BATCH_PIXELS worth of crops (conv)
    crop: int | None = None  # conv: crop side (None: from the image sizes)
    lr: float = 1e-3
    seed: int = 0
    minutes: float | None = None  # stop (and still write the model) after this long
    val_fraction: float = 0.1
    pca_gain: float | None = 4.0  # dense: start from PCA, step 1/gain per coefficient; None = random start
    threads: int | None = None
    device: str = "cpu"  # "auto", "cpu", "cuda" or "mps"
    # conv: where the network starts: a trained model of the same network (a shipped name
    # or a model file: its weights, not its optimizer), or "linear" (a block KLT); None:
    # the shipped photo model where the network is its network (with alpha added where
    # the images have alpha), else linear
    start: str | None = None
    channels: int | None = None  # the model's image channels; None: those that cover the images (grey
    # images that start from a colour model train it as colour, as a colour model codes grey)
    # conv: channels of a post-filter trained with the rest (transforms.PostFilter); None:
    # the filter of the model the network starts from (the photo model's), none from a
    # linear start; 0: none
    post: int | None = None

    def __post_init__(self) -> None:
        if self.reg not in REGULARIZERS:
            raise LatentzipError(f"unknown regularizer {self.reg!r}; choose one of {', '.join(REGULARIZERS)}")
        if self.arch is not None and self.arch not in ARCHS:
            raise LatentzipError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.noise_kind == "watermark":
            raise LatentzipError("watermark removal trains a network of its own, not a codec: use "
                                 "latentzip.apps.train_unmarker (latentzip train --noise-kind watermark)")
        if self.noise_kind not in NOISES:
            raise LatentzipError(f"unknown noise kind {self.noise_kind!r}; choose one of {', '.join(NOISES)}")
        if self.reg_weight is None:
            self.reg_weight = DEFAULT_REG_WEIGHT[self.reg]
        if self.post is not None and self.post < 0:
            raise LatentzipError("the post-filter's channels must be 0 (none) or more")
        for name in ("latent", "epochs", "batch_size", "qualities", "crop", "levels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LatentzipError(f"{name.replace('_', ' ')} must be positive")
        if self.minutes is not None and not self.minutes > 0:
            raise LatentzipError("the time budget (minutes) must be positive")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise LatentzipError(f"unknown device {self.device!r}; choose auto, cpu, cuda or mps")

    @property
    def dense(self) -> bool:
        return self.arch != "conv"

    def net(self, channels: int, height: int, width: int) -> NetConfig:
        try:
            cfg = NetConfig(self.arch or "conv", self.latent or 1, channels, height, width, tuple(self.hidden or ()),
                            self.levels or 1, self.prior or "factorized", self.qualities or 1,
                            self._hyper(), min(self.slices, self.latent or 1) if self.prior == "hyperprior" else 1,
                            "replicate" if self.arch == "conv" else "zeros", self.context and self.prior == "hyperprior",
                            self.post or 0)
            check_config(cfg)
        except ValueError as exc:
            raise LatentzipError(f"cannot train this network: {exc}") from None
        return cfg

    def _hyper(self) -> int:
        """Side channels of the hyperprior: a quarter of the latents, from 16 to 64."""
        return min(64, max(16, (self.latent or 1) // 4)) if self.prior == "hyperprior" else 0

    def ladder(self) -> list[float]:
        """The lmbda of each quality, lowest first."""
        top = self.lmbda if self.lmbda is not None else (LADDER_LMBDA if not self.dense else 0.01)
        return lmbdas(top, self.qualities or 1)


def choose(cfg: TrainConfig, images: "Images") -> TrainConfig:
    """`cfg` with every None filled in from the images: what the run will use."""
    shapes = {im.shape for im in images}
    channels = cfg.channels or covering_channels(s[2] for s in shapes)
    small = len(shapes) == 1 and next(iter(shapes))[0] * next(iter(shapes))[1] <= DENSE_MAX_PIXELS
    arch = cfg.arch or ("deep" if small and channels == 1 else "conv")
    if arch != "conv" and len(shapes) > 1:
        raise LatentzipError(f"a {arch} model codes images of one shape, but {mismatch(images)}; "
                             "use --arch conv (or convert, crop or resize them first)")
    if arch != "conv" and next(iter(shapes))[0] * next(iter(shapes))[1] * channels > 1 << 16:
        raise LatentzipError(f"a {arch} model is for small images (at most 65,536 values each); "
                             "these are larger: use --arch conv")
    chosen = replace(cfg, arch=arch)
    if arch == "conv":
        cut, _, fit = _split_order(images, chosen)
        side = _small_side([cut[i] for i in fit])  # the images crops come from
        levels = cfg.levels or int(np.clip(np.log2(max(side, 1) / 4), 1, 4))
        crop = cfg.crop or _crop_side(side, 2**levels)
        chosen = replace(chosen, levels=levels, crop=crop, prior=cfg.prior or "hyperprior",
                         hidden=cfg.hidden or DEFAULT_HIDDEN["conv"], qualities=cfg.qualities or (
                             1 if cfg.lmbda is not None else None),
                         batch_size=cfg.batch_size or max(2, BATCH_PIXELS // crop**2))
        chosen = _with_start(replace(chosen, channels=channels))
        chosen = replace(chosen, qualities=chosen.qualities or LADDER_QUALITIES, post=chosen.post or 0,
                         latent=chosen.latent or chosen.channels * 4**levels)  # the whole block: no quality ceiling
    else:
        if cfg.start not in (None, LINEAR):
            raise LatentzipError("only a conv model can start from a trained model")
        if cfg.post:
            raise LatentzipError("a post-filter is for conv models (--arch conv)")
        chosen = replace(chosen, channels=channels, latent=cfg.latent or 32, hidden=cfg.hidden or DEFAULT_HIDDEN[arch],
                         prior=cfg.prior or "factorized", qualities=1, levels=cfg.levels or 2,
                         batch_size=cfg.batch_size or 128, post=0)
    if chosen.prior == "hyperprior" and arch != "conv":
        raise LatentzipError("the hyperprior needs --arch conv")
    return replace(chosen, lmbda=chosen.lmbda if chosen.lmbda is not None else chosen.ladder()[-1])


Images = Sequence[np.ndarray]  # (H, W, C) uint8 arrays, of one or several sizes


def _with_start(chosen: TrainConfig) -> TrainConfig:
    """A conv `chosen` with its start settled. A trained model to start from lends the
    settings left open (its latents, quality ladder and post-filter); the shipped photo model is
    taken only where the network would be its network anyway, give or take an alpha
    channel."""
    if chosen.start == LINEAR:
        return chosen
    spec = chosen.start or next(iter(zoo.networks(PRETRAINED)), None)
    if spec is None:
        return replace(chosen, start=LINEAR)
    model = zoo.load_model(spec)
    # Grey images train (and are coded by) a colour model; images with alpha, a colour
    # model that also takes alpha (`_start_from_model`).
    channels = covering_channels([chosen.channels or model.cfg.channels, model.cfg.channels])
    adopted = replace(chosen, start=spec, qualities=chosen.qualities or model.cfg.qualities,
                      latent=chosen.latent or model.cfg.latent, channels=channels,
                      lmbda=chosen.lmbda if chosen.lmbda is not None else model.trained_lmbda,
                      post=chosen.post if chosen.post is not None else model.cfg.post)
    network = adopted.net(channels, model.cfg.height, model.cfg.width)
    if chosen.start is None and not _startable(network, model.cfg):
        return replace(chosen, start=LINEAR)
    return adopted


def _grows_alpha(network: NetConfig, trained: NetConfig) -> bool:
    """Whether `network` is `trained`'s channels plus an alpha channel it lacks."""
    return network.channels == trained.channels + 1 and not trained.has_alpha


def _startable(network: NetConfig, trained: NetConfig) -> bool:
    """Whether `network` can start from the weights of `trained`: the same network, or
    the same with an alpha channel or a context that `trained` lacks, with or without
    a post-filter (one of `trained`'s width goes on from its weights, one of another
    width starts as no filter, and no filter leaves a trained one out). A factorized
    network also starts from a hyperprior's transforms and gains (its densities start
    from their latents, `_start_from_model`)."""
    if network.prior == "factorized":
        priors = {"prior": network.prior, "hyper": network.hyper, "slices": network.slices, "context": network.context}
    else:
        priors = {"context": network.context or trained.context}
    return replace(trained, channels=network.channels if _grows_alpha(network, trained) else trained.channels,
                   height=network.height, width=network.width, post=network.post, **priors) == network


def _small_side(images: Images) -> int:
    """The side that images holding 90% of the pixels are at least as large as. Counted
    by pixels, not images: a few small images among large ones must not shrink every
    crop (photographs with small textures among them trained on 64 px crops instead of
    128, which leave the hyperprior one side latent per crop: 6-10% more bytes at equal
    PSNR on the sporco photographs after 6 minutes, measured)."""
    sides = np.array([min(im.shape[:2]) for im in images])
    order = np.argsort(sides)
    pixels = np.cumsum(np.array([im.shape[0] * im.shape[1] for im in images], np.float64)[order])
    return int(sides[order][np.searchsorted(pixels, 0.1 * pixels[-1], side="right")])


def _crop_side(side: int, stride: int) -> int:
    """Crops as large as `side` allows, up to CROP_MAX, in whole blocks where possible."""
    side = min(CROP_MAX, side)
    return side // stride * stride if side >= stride else side


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
    config: TrainConfig | None = None  # what the run used, every setting chosen
    leader: bool = True  # False in the processes of a DDP run but rank 0's, which write nothing


def pick_device(name: str) -> torch.device:
    """The device `name` asks for ("auto": a GPU when PyTorch sees one), refused with a
    clear message when this machine has none of that kind."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LatentzipError("--device cuda: PyTorch sees no CUDA GPU here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LatentzipError("--device mps: PyTorch sees no Apple GPU here")
    return torch.device(name)


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def _losses(forward: Callable[..., Any], alpha: bool, x: torch.Tensor, cfg: TrainConfig, quality: int,
            lmbda: float) -> tuple[torch.Tensor, float, float]:
    """(loss, bpp, psnr) of one batch through `forward` (the model, or its DDP wrapper);
    the input is corrupted first for denoising."""
    noisy = corrupt(x, cfg.noise, cfg.noise_kind)
    if cfg.reg == "contractive":
        noisy = noisy.detach().requires_grad_(True)
    out = forward(noisy, quality)
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    bpp = out.bits.sum() / pixels
    mse = distortion(out.x_hat, x, alpha).mean()
    loss = bpp + lmbda * 255.0**2 * mse
    if cfg.reg == "sparse":
        loss = loss + cfg.reg_weight * sparse_penalty(out.y)
    elif cfg.reg == "contractive":
        loss = loss + cfg.reg_weight * contractive_penalty(noisy, out.y)
    if out.kl is not None:
        loss = loss + cfg.beta * out.kl / (x.shape[-2] * x.shape[-1])
    psnr = float(10 * torch.log10(1.0 / mse.detach().float().clamp_min(1e-10)))
    return loss, float(bpp.detach()), psnr


def _save_checkpoint(path: Path, model: Autoencoder, opt: torch.optim.Optimizer, epoch: int, cfg: TrainConfig,
                     elapsed: float) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            value = value.detach().cpu()
            tensors[f"opt.{i}.{key}"] = value.reshape(-1) if value.dim() == 0 else value.contiguous()
    meta = {"epoch": str(epoch), "config": json.dumps(asdict(cfg)), "elapsed": f"{elapsed:.3f}"}
    with atomic_writer(path) as handle:
        handle.write(save(tensors, metadata=meta))


_RESUMABLE = ("threads", "device")  # settings a resumed run may change
_WITHOUT = {"post": 0}  # settings whose default (None) is a choice, as versions before them ran


def _load_checkpoint(path: Path, model: Autoencoder, opt: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[int, float]:
    """Restore model and optimizer; return the last finished epoch and the seconds the
    run had spent training by then (what a time budget counts)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
        # A setting added since the checkpoint was made takes what the version that made
        # it did: its default, or the value in _WITHOUT where the default is a choice.
        saved = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING} | _WITHOUT
        saved.update(json.loads(meta.get("config", "{}")))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise LatentzipError(f"cannot resume from {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    now = json.loads(json.dumps(asdict(cfg)))
    differ = sorted(k for k in saved.keys() | now.keys() if k not in _RESUMABLE and saved.get(k) != now.get(k))
    if differ:
        shown = ", ".join(printable(f"{k} {saved.get(k)!r} there, {now.get(k)!r} here", 80) for k in differ[:3])
        raise LatentzipError(f"checkpoint {path} was made with other settings ({shown}); train again without --resume")
    state = opt.state_dict()
    device = next(model.parameters()).device
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, i, key = name.split(".", 2)
            slot = state["state"].setdefault(int(i), {})
            slot[key] = value.reshape(()) if key == "step" else value.to(device)
    params = [p for group in opt.param_groups for p in group["params"]]
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        # Adam's moments follow the parameter groups' order, which versions may change.
        if any(slot.get("exp_avg", p).shape != p.shape for slot, p in zip(
                (state["state"].get(i, {}) for i in range(len(params))), params)):
            raise ValueError("optimizer state of other parameters")
        opt.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError):
        raise LatentzipError(f"checkpoint {path} was made with other settings; train again without --resume") from None
    return int(meta.get("epoch", "0")), float(meta.get("elapsed", "0"))


def split(images: Images, cfg: TrainConfig) -> tuple[Images, Images]:
    """(validation, fit) images, the split `train` makes: seeded by cfg.seed, so it can
    be made again (to refit a trained model's refinement tables, for instance). Fewer
    than SPLIT_IMAGES images for a conv model are split by the piece (windows.pieces)."""
    images, val, fit = _split_order(images, cfg)
    if isinstance(images, np.ndarray):
        return images[val], images[fit]
    return [images[i] for i in val], [images[i] for i in fit]


def _split_order(images: Images, cfg: TrainConfig) -> tuple[Images, np.ndarray, np.ndarray]:
    """What `split` divides (the images, or their pieces) and its (validation, fit)
    indices, without copying an array of images."""
    if not cfg.dense and len(images) < SPLIT_IMAGES:
        images = windows.pieces(images)
    if len(images) < 2:
        large = "" if cfg.dense else f", or one of at least {2 * windows.MIN_SIDE} pixels on a side"
        raise LatentzipError(f"need at least 2 training images{large}")
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    n_val = min(max(1, int(round(len(images) * cfg.val_fraction))), len(images) - 1)
    return images, order[:n_val], order[n_val:]


class Batches:
    """Where training batches come from: the images themselves (dense models, one size)
    or random crops with random horizontal flips (convolutional models, any sizes; an
    epoch draws as many crops as there are images, in at least EPOCH_STEPS steps)."""

    def __init__(self, images: Images, cfg: TrainConfig, ranks: Ranks = Ranks()):
        self.images, self.cfg, self.ranks = images, cfg, ranks
        if cfg.dense:
            self.array = np.asarray(images)
            # Several processes take whole global batches only, so that each has a share.
            whole = math.ceil if ranks.world == 1 else math.floor
            self.steps = max(1, whole(len(self.array) / cfg.batch_size))  # type: ignore[operator]
        else:
            crop = cfg.crop or CROP_MAX
            self.usable = [i for i, im in enumerate(images) if min(im.shape[:2]) >= crop]
            if not self.usable:
                raise LatentzipError(f"no training image is at least {crop}x{crop} pixels; pass a smaller --crop")
            self.steps = max(EPOCH_STEPS, math.ceil(len(self.usable) / cfg.batch_size))  # type: ignore[operator]

    def epoch(self, epoch: int) -> "Callable[[int], np.ndarray]":
        """This process's share of the batch of each step of `epoch`: the global batches
        are drawn from (seed, epoch) alone, the same in every process."""
        cfg, share = self.cfg, self.ranks.share
        if cfg.dense:
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(self.array)).numpy()
            self._noise(epoch)
            return lambda step: self.array[share(perm[step * cfg.batch_size : (step + 1) * cfg.batch_size])]  # type: ignore[operator]
        rng = np.random.default_rng([cfg.seed, epoch])
        crop, size = cfg.crop, cfg.batch_size
        plan = []
        for _ in range(self.steps):
            picks = []
            for i in rng.choice(self.usable, size=size):
                h, w = self.images[i].shape[:2]
                picks.append((i, int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1)), bool(rng.integers(2))))
            plan.append(share(picks))
        channels = cfg.channels
        self._noise(epoch)

        def batch(step: int) -> np.ndarray:
            out = np.empty((len(plan[step]), crop, crop, channels), np.uint8)  # type: ignore[arg-type]
            for k, (i, top, left, flip) in enumerate(plan[step]):
                patch = _with_channels(self.images[i][top : top + crop, left : left + crop], channels)  # type: ignore[operator]
                out[k] = patch[:, ::-1] if flip else patch
            return out

        return batch

    def _noise(self, epoch: int) -> None:
        """Seed the noise of quantization (and of --noise) for `epoch`, apart in each process."""
        torch.manual_seed(self.cfg.seed * 100_003 + epoch + 1_000_003 * self.ranks.rank)


def _with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W, c) image with `channels`: grey repeated as colour, opaque alpha added."""
    from .codec import _fit_channels

    return _fit_channels(image[None], channels)[0]


def train(
    images: Images,
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_start: Callable[[TrainConfig, int, str], None] | None = None,
) -> TrainResult:
    """Train a codec on uint8 images ((N, H, W, C) or a list of (H, W, C) of any sizes)
    and return it frozen, ready to code.

    `on_epoch` is called after each epoch's checkpoint is written (for progress reports
    of callers; an exception it raises stops training with the checkpoint in place);
    `on_start` with the settings chosen, the number of images and the device, once
    the run knows them."""
    started = time.monotonic()
    images = transparent.fill_all(check_images(images, least=1, seed=cfg.seed))  # as the codec will see them
    cfg = choose(cfg, images)
    device = pick_device(cfg.device)
    ranks = join(device)
    if ranks.world > 1:
        # DDP's note that a 1x1 convolution's gradient is laid out unlike its bucket: a
        # copy per step, no error, and not worth a line on every run.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        if cfg.reg == "contractive":
            raise LatentzipError("--reg contractive needs gradients of gradients, which DDP does not average; "
                                 "train it in one process")
        device = torch.device(ranks.device)
        progress = progress and ranks.leader
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    val, fit = split(images, cfg)
    channels = cfg.channels
    h, w = images[0].shape[:2]
    model = Autoencoder(cfg.net(channels, h, w))
    if cfg.start not in (None, LINEAR):
        _start_from_model(model, cfg.start, fit, cfg)  # type: ignore[arg-type]
    elif cfg.dense and cfg.pca_gain is not None:
        _start_from_pca(model, np.asarray(fit), cfg)
    elif not cfg.dense:
        _start_from_klt(model, fit, cfg)
    model.to(device)
    # Each step trains one quality, and the side prior of a hyperprior is per quality:
    # the other qualities' parameters get no gradient in that step.
    forward = DistributedDataParallel(model, find_unused_parameters=model.cfg.qualities > 1) \
        if ranks.world > 1 else model
    opt = torch.optim.Adam(_param_groups(model), lr=cfg.lr)
    batches = Batches(fit, cfg, ranks)
    budget = None if cfg.minutes is None else cfg.minutes * 60
    # Without a number of epochs, a budget is run by the clock: the learning rate decays
    # over the time, and training stops in time to fit the refinement tables.
    by_clock = cfg.epochs is None and budget is not None
    if cfg.epochs is None and budget is None:
        cfg = replace(cfg, epochs=10)
    ckpt = Path(checkpoint) if checkpoint else None
    start, spent = 0, 0.0
    if resume:
        if ckpt is None or not ckpt.exists():
            raise LatentzipError(f"nothing to resume: checkpoint {ckpt} does not exist")
        start, spent = _load_checkpoint(ckpt, model, opt, cfg)
    if on_start is not None and ranks.leader:
        on_start(cfg, len(images), str(device) if ranks.world == 1 else f"{ranks.world} x {device.type}")
    began = started - spent  # a budget counts the whole run, set-up included

    def elapsed() -> float:
        """Seconds of the run, by rank 0's clock: every process must decide alike."""
        return ranks.agree(time.monotonic() - began)

    limit = None
    if budget is not None:
        limit = budget
        if by_clock:
            finish = 0.0 if cfg.dense else ranks.agree(_finishing_time(model, cfg, fit, val))
            limit -= max(CLOCK_RESERVE * budget, FINISH_MARGIN * finish)
    ladder = cfg.ladder()
    history: list[EpochStats] = []
    stopped_early = False
    x_val = _validation(val, channels, device)
    if device.type == "cuda":
        # TF32 products, fp32 values: bf16 would hold latents of 50 to a quarter, as coarse
        # as the quantization that training learns to spend bits on.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # every step's crops are of one size
    epoch = start
    while by_clock or epoch < cfg.epochs:  # type: ignore[operator]
        draw = batches.epoch(epoch)
        model.train()
        sums = np.zeros(3)
        total = "" if by_clock else f"/{cfg.epochs}"
        bar = tqdm(range(batches.steps), desc=f"epoch {epoch + 1}{total}", disable=None if progress else True, leave=False)
        t0 = time.monotonic()
        for step in bar:
            # Cosine decay over the run: by the clock, or by the global step alone (then
            # resuming needs no state), except that a run slower than its budget allows
            # also follows the clock, so it still ends with a small rate.
            progressed = 0.0 if by_clock else (epoch * batches.steps + step) / (cfg.epochs * batches.steps)  # type: ignore[operator]
            now = elapsed() if limit is not None else 0.0
            if limit is not None:
                progressed = max(progressed, now / limit)
            for group in opt.param_groups:
                group["lr"] = group["scale"] * cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progressed, 1.0)))
            quality = (epoch * batches.steps + step) % len(ladder)
            x = _to_tensor(draw(step), device)
            loss, bpp, psnr = _losses(forward, model.cfg.has_alpha, x, cfg, quality, ladder[quality])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # A step whose loss or gradient overflowed is skipped: let into Adam, one such
            # step turns every weight into NaN (seen once in a 15-minute RGBA run).
            if torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)):
                opt.step()
            sums += (loss.item(), bpp, psnr)
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}")
            if limit is not None and now > limit:
                stopped_early = not by_clock
                break
        bar.close()
        out_of_time = limit is not None and elapsed() > limit
        vloss, vbpp, vpsnr = _validate(model, x_val, cfg)
        stats = EpochStats(epoch + 1, *(sums / (step + 1)), vloss, vbpp, vpsnr, time.monotonic() - t0)
        history.append(stats)
        if progress:
            tqdm.write(
                f"epoch {stats.epoch}{total}  loss {stats.loss:.4f}  bpp {stats.bpp:.3f}  "
                f"psnr {stats.psnr:.2f} dB | val loss {vloss:.4f}  bpp {vbpp:.3f}  psnr {vpsnr:.2f} dB  "
                f"({stats.seconds:.0f}s)"
            )
        epoch += 1
        if out_of_time and step + 1 < batches.steps:
            break  # a partial epoch is not checkpointed: --resume redoes it
        so_far = elapsed()  # in every process: rank 0's clock is broadcast
        if ckpt is not None and ranks.leader:
            _save_checkpoint(ckpt, model, opt, epoch, cfg, so_far)
        ranks.wait()
        if on_epoch is not None and ranks.leader:
            on_epoch(stats)
        if out_of_time:
            break
    if by_clock:
        cfg = replace(cfg, epochs=epoch)
    leave()

    model.to("cpu").eval()
    meta = {"train": _record(cfg), "history": [asdict(h) for h in history],
            "default_quality": -(-2 * model.cfg.qualities // 3)}
    codec = ImageCodec.from_model(model, meta=meta)
    # Refinement tables are fitted on training images only, never on validation ones.
    codec = codec.with_refinement(_fit_subset(fit, cfg))
    native = covering_channels(im.shape[2] for im in images)  # presets are measured on images as they are
    return TrainResult(_described(codec, _validation_images(val, native)), history, stopped_early, cfg, ranks.leader)


def _described(codec: ImageCodec, images: list[np.ndarray]) -> ImageCodec:
    """`codec` with its presets measured on `images`, at effort 0 as the shipped presets
    are: the default effort fits every image's latents at every rung, minutes that the
    time budget does not hold."""
    return codec.at_effort(0).with_presets(_ladder(codec), images)


def _finishing_time(model: Autoencoder, cfg: TrainConfig, fit: Images, val: Images) -> float:
    """Seconds the end of a convolutional run will take (see the end of `train`:
    refinement tables fitted on training images, presets measured on validation images),
    timed by doing both on a sample of validation images with a copy of `model` and
    scaled to the pixels the end codes. Training does not change what the network costs,
    so its start tells. (On the 256 px textures the end took about two minutes, where 8%
    of a 15-minute budget keeps 72 s.)"""
    shown = _validation_images(val, cfg.channels)
    sizes = np.cumsum([im.shape[0] * im.shape[1] for im in shown])
    sample = shown[: max(1, int(np.searchsorted(sizes, FINISH_SAMPLE_PIXELS, side="right")))]
    pixels = lambda images: sum(im.shape[0] * im.shape[1] for im in images)  # noqa: E731
    codec = ImageCodec.from_model(copy.deepcopy(model).cpu())
    began = time.monotonic()
    codec = codec.with_refinement(sample)
    fitting = time.monotonic() - began
    _described(codec, sample)
    describing = time.monotonic() - began - fitting
    return (fitting * pixels(_fit_subset(fit, cfg)) + describing * pixels(shown)) / pixels(sample)


def _param_groups(model: Autoencoder) -> list[dict[str, Any]]:
    """Adam's parameter groups: a convolutional model's transforms learn at
    TRANSFORM_LR_SCALE of the rate of its latent codec (dense models: one rate)."""
    conv = not model.cfg.record.fixed_size
    rest: list[torch.nn.Parameter] = []
    transform: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (transform if conv and name.startswith(("analysis.", "synthesis.")) else rest).append(p)
    groups = [{"params": rest, "scale": 1.0}, {"params": transform, "scale": TRANSFORM_LR_SCALE}]
    return [g for g in groups if g["params"]]


def check_images(images: Images, least: int = 2, seed: int = 0) -> Images:
    """The training images, refused with a clear message when training could not use them
    (shared with colourisation training, which needs `least` 1); images holding more than
    TRAIN_MAX_PIXELS are cut to random windows of themselves (windows.py)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise LatentzipError("training images must be a uint8 array of shape (N, H, W, C)")
    elif not all(isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 for im in images):
        raise LatentzipError("training images must be uint8 arrays of shape (H, W, C)")
    if len(images) < least:
        raise LatentzipError(f"need at least {least} training image{'s' if least > 1 else ''}")
    return windows.within(images, TRAIN_MAX_PIXELS, seed)


def _record(cfg: TrainConfig) -> dict:
    """The training settings a model file records (every choice, device left out)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("threads",)}


def _fit_subset(fit: Images, cfg: TrainConfig) -> Images:
    """Training images to fit the refinement tables on: all of a dense model's (up to
    refine's own cap); of a convolutional one's, centre crops of FIT_SIDE, the first
    MAX_FIT_PIXELS worth. Whole photographs made the end of a run the longest part of it
    (eleven 12-megapixel photographs, a one-minute budget: 3.5 minutes fitting on the
    first of them, whole, at 3-6 GB) for tables that adapt to each file anyway."""
    if cfg.dense:
        return fit
    crops = [_centre(im, FIT_SIDE) for im in fit]
    sizes = np.cumsum([im.shape[0] * im.shape[1] for im in crops])
    return crops[: max(1, int(np.searchsorted(sizes, MAX_FIT_PIXELS, side="right")))]


def _centre(image: np.ndarray, side: int) -> np.ndarray:
    """The centre of `image` (H, W, C), at most `side` pixels a side."""
    h, w = image.shape[:2]
    ch, cw = min(h, side), min(w, side)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def _validation_images(images: Images, channels: int) -> list[np.ndarray]:
    """The first VALIDATION_IMAGES validation images, centre-cropped to VALIDATION_SIDE."""
    return [_with_channels(_centre(im, VALIDATION_SIDE), channels) for im in list(images)[:VALIDATION_IMAGES]]


def _validation(images: Images, channels: int, device: torch.device) -> list[torch.Tensor]:
    """Validation images as tensors, grouped by size."""
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for im in _validation_images(images, channels):
        groups.setdefault(im.shape, []).append(im)
    return [_to_tensor(np.stack(g), device) for g in groups.values()]


DENSE_BOUNDS = (56, 40, 24, 16, 10, 6, 3)  # a dense model's presets above the network alone


def _ladder(codec: ImageCodec) -> list[tuple[int, int | None]]:
    """(quality, max error) of each preset, lowest first: a convolutional model's
    qualities, a dense model's network alone and then refinement bounds."""
    if codec.cfg.qualities > 1 or not codec.cfg.record.fixed_size:
        return [(q, None) for q in range(1, codec.cfg.qualities + 1)]
    return [(1, None), *((1, d) for d in DENSE_BOUNDS)]


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


def _start_from_model(model: Autoencoder, spec: str, images: Images, cfg: TrainConfig) -> None:
    """Load the weights of the trained model `spec` (a shipped name or a model file).
    Where `model` adds alpha to its colour network, the alpha inputs start unused and the
    alpha output opaque. Training may teach the analysis to read alpha (where colour
    shows); alpha itself is the alpha coder's (alpha.py), from its neighbours. Where the
    prior differs (a factorized one on a hyperprior's transforms), the densities start
    from the latents of crops of `images`."""
    trained = zoo.load_model(spec).model
    if not _startable(model.cfg, trained.cfg):
        raise LatentzipError(f"cannot start from {spec}: its network is not the one these settings make "
                             "(leave the network's settings to it, or train with --start linear)")
    state = model.state_dict()
    for key, value in trained.state_dict().items():
        if key not in state:  # a post-filter the new network goes without
            continue
        if key.startswith("synthesis.post.") and model.cfg.post != trained.cfg.post:
            continue  # a filter of another width starts afresh (as no filter)
        if value.shape != state[key].shape:
            state[key].zero_()
        # Blocks are channel-major (pixel unshuffle), so alpha's weights follow colour's.
        state[key][tuple(slice(0, n) for n in value.shape)] = value
    if _grows_alpha(model.cfg, trained.cfg):
        state["synthesis.linear.bias"][trained.cfg.channels * model.cfg.stride**2 :] = 0.5  # + 1/2: opaque
    model.load_state_dict(state)
    if model.cfg.prior != trained.cfg.prior:  # a factorized prior on a hyperprior's transforms
        batches = Batches(images, cfg)
        steps = min(batches.steps, -(-START_CROPS // cfg.batch_size))  # type: ignore[operator]
        batch = batches.epoch(0)
        with torch.no_grad():
            y = torch.cat([model.analyse(_to_tensor(batch(step), torch.device("cpu"))) for step in range(steps)])
        model.latents.start_on(y)  # type: ignore[union-attr]


def _start_from_klt(model: Autoencoder, images: Images, cfg: TrainConfig) -> None:
    """Fit a KLT on random s x s blocks of the training images and make it the linear
    path; start each quality as a uniform quantizer matched to its lmbda."""
    s, channels = model.cfg.stride, model.cfg.channels
    rng = np.random.default_rng(cfg.seed)
    usable = [im for im in images if min(im.shape[:2]) >= s]
    blocks = np.empty((KLT_BLOCKS, s, s, channels), np.uint8)
    for k, i in enumerate(rng.integers(len(usable), size=KLT_BLOCKS)):
        im = usable[i]
        top, left = rng.integers(im.shape[0] - s + 1), rng.integers(im.shape[1] - s + 1)
        blocks[k] = _with_channels(im[top : top + s, left : left + s], channels)
    # Blocks as the analysis sees them: channel-major (pixel unshuffle), centred on 1/2.
    flat = blocks.transpose(0, 3, 1, 2).reshape(KLT_BLOCKS, -1).astype(np.float64) / 255.0 - 0.5
    mean = flat.mean(0)
    values, vectors = np.linalg.eigh(np.cov(flat - mean, rowvar=False))
    components = vectors[:, ::-1].T[: model.cfg.latent]
    deviations = np.zeros(model.cfg.latent)
    deviations[: len(components)] = np.sqrt(np.clip(values[::-1][: model.cfg.latent], 0, None))
    init_linear(model.analysis, model.synthesis, torch.from_numpy(components.copy()).float(),
                torch.from_numpy(mean).float())
    # A uniform quantizer of step d (grey levels) costs MSE d^2/12; the lmbda that
    # balances it at high rate is about 3.2 / d^2 (calibrated on natural images).
    steps = torch.tensor([math.sqrt(3.2 / lmbda) / 255.0 for lmbda in cfg.ladder()])
    model.latents.gains.set_steps(steps)  # type: ignore[union-attr]
    model.latents.start(torch.from_numpy(deviations).float())


@torch.no_grad()
def _validate(model: Autoencoder, groups: list[torch.Tensor], cfg: TrainConfig) -> tuple[float, float, float]:
    """Validation loss, estimated bpp and mean PSNR with rounded latents, as when coding,
    at the model's top quality."""
    model.eval()
    quality = model.cfg.qualities - 1
    lmbda = cfg.ladder()[quality]
    bits, sq, psnr_sum, n_img, pixels = 0.0, 0.0, 0.0, 0, 0
    for x in groups:
        for i in range(0, len(x), 256):
            xb = x[i : i + 256]
            y = model.analyse(xb)
            y_hat, image_bits = model.latents(y, quality, "rounded")
            x_hat = model.synthesise(y_hat, xb.shape[-2:], quality=quality)
            per_image = distortion(x_hat, xb, model.cfg.has_alpha)
            bits += float(image_bits.sum())
            sq += float(per_image.sum())
            psnr_sum += float((10 * torch.log10(1.0 / per_image.clamp_min(1e-10))).sum())
            n_img += len(xb)
            pixels += len(xb) * xb.shape[-2] * xb.shape[-1]
    bpp = bits / pixels
    return bpp + lmbda * 255.0**2 * sq / n_img, bpp, psnr_sum / n_img
