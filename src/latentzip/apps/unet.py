"""The U-Net that the image-to-image applications share, and their model files.

Colourisation (colornet.py) and watermark removal (marknet.py) each map an image to
per-pixel outputs of the same size. Unlike a codec, nothing has to pass a bottleneck:
each level of the U-Net halves the resolution and widens, so the deepest sees a few
hundred pixels around a pixel, and the way back up joins each level's features to those
upsampled from below, so fine detail reaches the output directly. The top level works at
half resolution on each 2x2 block of input pixels (`pixel_unshuffle`). The network is
fully convolutional: an image of any size is padded to its stride (last rows and
columns repeated) and the output cropped back. An image larger than TILE runs in tiles
whose margins cover the receptive field, so it comes out as the whole image would,
without seams, in bounded memory.

Each task's file is a latentzip model file of its own `Kind`: the codec verbs refuse it,
and each task's loader refuses the others by name. Weights are stored as float16, and a
trained network is rounded to them, so a model works the same before and after saving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentzipError, ModelError, printable
from ..fsio import read_bytes, write_bytes
from ..image.modelfile import MAX_BYTES, Kind, ModelFile, check_stored, stored_shapes

DEFAULT_WIDTHS = (16, 32, 64, 128, 128)  # channels per level, from half resolution down to 1/32
FINE_WIDTH = 16  # channels of the full-resolution layer
MAX_LEVELS, MAX_WIDTH = 7, 1024
TILE = 1024  # an image runs in tiles of this side, each with MARGIN around it
MARGIN = 256  # more than the receptive field's radius (tests measure it)


@dataclass(frozen=True)
class NetConfig:
    widths: tuple[int, ...] = DEFAULT_WIDTHS

    @property
    def stride(self) -> int:
        return 2 ** len(self.widths)

    @classmethod
    def from_json(cls, net: Any) -> "NetConfig":
        """The config a model file states, checked: ValueError when it is not one."""
        widths = net.get("widths") if isinstance(net, dict) else None
        if not (isinstance(widths, list) and 1 <= len(widths) <= MAX_LEVELS
                and all(isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in widths)):
            raise ValueError(f"widths must be 1 to {MAX_LEVELS} channel counts of 1 to {MAX_WIDTH}")
        return cls(tuple(widths))


def checked(image: np.ndarray, verb: str) -> np.ndarray:
    """An image as uint8 (H, W, C), C = 1..4; anything else is refused, naming `verb`."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[-1] <= 4 or 0 in image.shape:
        raise LatentzipError(f"{verb} takes uint8 images (H, W) or (H, W, C) with C = 1 to 4, got "
                             f"{image.dtype} {image.shape}")
    return image


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) of an (H, W, C) image: grey repeated, alpha dropped."""
    return np.repeat(image[..., :1], 3, axis=-1) if image.shape[-1] in (1, 2) else image[..., :3]


def block(inputs: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, width, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.1))


def doubled(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class UNet(nn.Module):
    """The trunk: `features` of a half-resolution input, at that resolution. A task adds
    its input scaling and output layers (`forward`: (N, C, H, W) -> (N, OUTPUTS, H, W))."""

    OUTPUTS: ClassVar[int]

    def __init__(self, cfg: NetConfig, inputs: int):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.down = nn.ModuleList(block(w_in, w) for w_in, w in zip((inputs, *widths[:-1]), widths))
        self.up = nn.ModuleList(block(deeper + w, w) for w, deeper in zip(widths[-2::-1], widths[:0:-1]))

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """x padded at the bottom and right to a multiple of the stride."""
        h, w = x.shape[-2:]
        s = self.cfg.stride
        return F.pad(x, (0, -w % s, 0, -h % s), mode="replicate")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, layer in enumerate(self.down):
            x = layer(F.avg_pool2d(x, 2) if level else x)
            skips.append(x)
        for layer, skip in zip(self.up, skips[-2::-1]):
            x = layer(torch.cat([doubled(x), skip], dim=1))
        return x


class UNetModel:
    """A trained U-Net of one task with its training record, and its model file. A task
    names its network class, file kind and how a user trains one."""

    NET: ClassVar[type[UNet]]
    KIND: ClassVar[Kind]
    HOW_TO_TRAIN: ClassVar[str]

    def __init__(self, net: UNet, meta: dict[str, Any] | None = None, name: str | None = None):
        self.net = net.eval()
        self.meta = dict(meta or {})
        self.name = name

    @property
    def label(self) -> str:
        return self.name or f"the {self.KIND.noun}"

    @classmethod
    def from_net(cls, net: UNet, meta: dict[str, Any] | None = None) -> "UNetModel":
        """Wrap a trained network, its weights rounded to what the file stores."""
        net = net.to("cpu")
        file = ModelFile(cls.KIND.version, {}, ModelFile.pack_weights(net.state_dict()), kind=cls.KIND)
        net.load_state_dict(file.weights())
        return cls(net, meta)

    def to_bytes(self) -> bytes:
        net = {"widths": list(self.net.cfg.widths)}
        tensors = ModelFile.pack_weights(self.net.state_dict())
        return ModelFile(self.KIND.version, net, tensors, self.meta, self.KIND).to_bytes()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically."""
        write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> "UNetModel":
        what = name or "model file"
        file = ModelFile.parse(data, what, cls._check_shapes, cls.KIND)
        net = cls.NET(NetConfig.from_json(file.net))
        try:
            net.load_state_dict(file.weights())
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"{what} is damaged ({str(exc).splitlines()[0]})") from None
        return cls(net, file.meta, name)

    @classmethod
    def load(cls, model: str | os.PathLike[str]) -> "UNetModel":
        """A model file of this task; a shipped codec's name is refused by name."""
        from ..image import zoo

        if not os.path.exists(model):
            if model in zoo.names():
                raise ModelError(f"{model} is a shipped image codec, not {cls.KIND.named}")
            raise ModelError(f"no model file {printable(os.fspath(model), 200)} (train one with {cls.HOW_TO_TRAIN})")
        return cls.from_bytes(read_bytes(model, MAX_BYTES), name=printable(os.fspath(model)))

    @classmethod
    def _check_shapes(cls, version: int, net: dict[str, Any], stored: dict[str, tuple[int, ...]]) -> None:
        """Raise ValueError unless the stored tensors are exactly the network's that `net`
        describes (built on the meta device, which allocates nothing)."""
        with torch.device("meta"):
            state = cls.NET(NetConfig.from_json(net)).state_dict()
        check_stored(stored_shapes({k: v.shape for k, v in state.items()}), stored)

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (1, OUTPUTS, H, W) for an input (1, C, H, W); large
        images tile by tile."""
        h, w = x.shape[-2:]
        if h <= TILE + 2 * MARGIN and w <= TILE + 2 * MARGIN:
            return self.net(x.float())
        out = torch.empty(1, self.NET.OUTPUTS, h, w)
        for top in range(0, h, TILE):
            for left in range(0, w, TILE):
                # Windows start on the stride's grid (TILE and MARGIN are multiples of
                # it), so the network pools them as it would pool the whole image.
                y0, x0 = max(0, top - MARGIN), max(0, left - MARGIN)
                window = self.net(x[..., y0 : min(h, top + TILE + MARGIN), x0 : min(w, left + TILE + MARGIN)].float())
                core = window[..., top - y0 : top - y0 + TILE, left - x0 : left - x0 + TILE]
                out[..., top : top + core.shape[-2], left : left + core.shape[-1]] = core
        return out
