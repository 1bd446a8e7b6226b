"""The colourisation network and its model file.

A small U-Net maps lightness L to chroma (a, b). Chroma is predicted at half resolution,
as JPEG stores it (each 2x2 block of L is one input pixel there), then upsampled and
sharpened by a small full-resolution layer that sees L, so colour edges follow the
image's edges. Each level of the U-Net halves the resolution and widens, so the deepest
sees a few hundred pixels around a pixel; the way back up joins each level's features to
those upsampled from below. It is fully convolutional: an image of any size is padded to
the network's stride (its last rows and columns repeated) and the output cropped back.
An image larger than TILE is coloured in tiles whose margins cover the receptive field,
so it comes out as the whole image would, without seams, in bounded memory.

The file is a latentzip model file of its own kind (`modelfile.COLORIZER`): the codec
verbs refuse it, and `Colorizer.load` refuses a codec, each by name. Weights are stored
as float16, and a trained network is rounded to them, so a model colours the same
before and after saving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, printable
from ..fsio import read_bytes, write_bytes
from ..image.modelfile import COLORIZER, MAX_BYTES, ModelFile, check_stored, stored_shapes

DEFAULT_WIDTHS = (16, 32, 64, 128, 128)  # channels per level, from half resolution down to 1/32
FINE_WIDTH = 16  # channels of the full-resolution layer
MAX_LEVELS, MAX_WIDTH = 7, 1024
CHROMA_SCALE = 100.0  # the network works on a and b in hundreds
TILE = 1024  # an image is coloured in tiles of this side, each with MARGIN around it
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


def _block(inputs: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, width, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.1))


class ColorNet(nn.Module):
    """L (N, 1, H, W) in [0, 100] -> (a, b) (N, 2, H, W), for any H and W."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.down = nn.ModuleList(_block(w_in, w) for w_in, w in zip((4, *widths[:-1]), widths))
        self.up = nn.ModuleList(_block(deeper + w, w) for w, deeper in zip(widths[-2::-1], widths[:0:-1]))
        self.out = nn.Conv2d(widths[0], 2, 1)
        self.fine = nn.Sequential(nn.Conv2d(3, FINE_WIDTH, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(FINE_WIDTH, 2, 3, padding=1))

    def forward(self, light: torch.Tensor) -> torch.Tensor:
        h, w = light.shape[-2:]
        s = self.cfg.stride
        light = F.pad(light / 50.0 - 1.0, (0, -w % s, 0, -h % s), mode="replicate")
        x = F.pixel_unshuffle(light, 2)
        skips = []
        for level, block in enumerate(self.down):
            x = block(F.avg_pool2d(x, 2) if level else x)
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1]):
            x = block(torch.cat([_doubled(x), skip], dim=1))
        chroma = _doubled(self.out(x))
        chroma = chroma + self.fine(torch.cat([light, chroma], dim=1))
        return chroma[..., :h, :w] * CHROMA_SCALE


def _doubled(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Colorizer:
    """A trained colourisation network with its training record: `chroma` predicts (a, b)
    from L; `latentzip.apps.colorize` turns grey images into colour ones with it."""

    def __init__(self, net: ColorNet, meta: dict[str, Any] | None = None, name: str | None = None):
        self.net = net.eval()
        self.meta = dict(meta or {})
        self.name = name

    @property
    def label(self) -> str:
        return self.name or "the colourisation model"

    @classmethod
    def from_net(cls, net: ColorNet, meta: dict[str, Any] | None = None) -> "Colorizer":
        """Wrap a trained network, its weights rounded to what the file stores."""
        net = net.to("cpu")
        file = ModelFile(COLORIZER.version, {}, ModelFile.pack_weights(net.state_dict()), kind=COLORIZER)
        net.load_state_dict(file.weights())
        return cls(net, meta)

    def to_bytes(self) -> bytes:
        net = {"widths": list(self.net.cfg.widths)}
        tensors = ModelFile.pack_weights(self.net.state_dict())
        return ModelFile(COLORIZER.version, net, tensors, self.meta, COLORIZER).to_bytes()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically."""
        write_bytes(path, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> "Colorizer":
        what = name or "model file"
        file = ModelFile.parse(data, what, _check_shapes, COLORIZER)
        net = ColorNet(NetConfig.from_json(file.net))
        try:
            net.load_state_dict(file.weights())
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"{what} is damaged ({str(exc).splitlines()[0]})") from None
        return cls(net, file.meta, name)

    @classmethod
    def load(cls, model: str | os.PathLike[str]) -> "Colorizer":
        """A colourisation model file; a shipped codec's name is refused by name."""
        from ..image import zoo

        if not os.path.exists(model):
            if model in zoo.names():
                raise ModelError(f"{model} is a shipped image codec, not a colourisation model")
            raise ModelError(f"no model file {printable(os.fspath(model), 200)} (train one with "
                             "latentzip train --task colorize)")
        return cls.from_bytes(read_bytes(model, MAX_BYTES), name=printable(os.fspath(model)))

    @torch.no_grad()
    def chroma(self, light: torch.Tensor) -> torch.Tensor:
        """(a, b) (1, 2, H, W) for L (1, 1, H, W); large images tile by tile."""
        h, w = light.shape[-2:]
        if h <= TILE + 2 * MARGIN and w <= TILE + 2 * MARGIN:
            return self.net(light.float())
        out = torch.empty(1, 2, h, w)
        for top in range(0, h, TILE):
            for left in range(0, w, TILE):
                # Windows start on the stride's grid (TILE and MARGIN are multiples of
                # it), so the network pools them as it would pool the whole image.
                y0, x0 = max(0, top - MARGIN), max(0, left - MARGIN)
                window = self.net(light[..., y0 : min(h, top + TILE + MARGIN), x0 : min(w, left + TILE + MARGIN)].float())
                core = window[..., top - y0 : top - y0 + TILE, left - x0 : left - x0 + TILE]
                out[..., top : top + core.shape[-2], left : left + core.shape[-1]] = core
        return out


def _check_shapes(version: int, net: dict[str, Any], stored: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError unless the stored tensors are exactly the network's that `net`
    describes (built on the meta device, which allocates nothing)."""
    with torch.device("meta"):
        state = ColorNet(NetConfig.from_json(net)).state_dict()
    check_stored(stored_shapes({k: v.shape for k, v in state.items()}), stored)
