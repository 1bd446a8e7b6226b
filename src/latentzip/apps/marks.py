"""Watermarks, for training watermark removal and for testing it: text and logos laid
over an image at random position, scale, angle and opacity.

A mark has a colour c and a coverage a in [0, 1] per pixel (text: its glyphs'
antialiased coverage; a logo: its alpha). Laid at opacity o over an image x it gives
y = (1 - o a) x + o a c, the alpha blend watermarking tools use; several marks blend one
after the other, and their sum is again one layer (`alpha`, `colour`) of that form.

Marks are drawn from `Marks`: fonts for text, and logos. Text is a made-up name, word,
domain or copyright line in one colour, at 12 to 72 px, sometimes repeated over the
whole image as stock photographs are marked. A logo is a PNG from `Marks.logos` or a
badge drawn here (a shape in one or two colours, sometimes with a symbol or initials),
32 to 256 px on its long side. Opacities are uniform in OPACITY; half the marks are
turned by up to 45 degrees. The sizes are in pixels, not a share of the image, so a
training crop sees marks as large as a whole photograph does, up to LARGEST of its
shorter side for a logo and a third of that for the height of text (a mark that fills
the image hides what is mark and what is image).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import LatentzipError, printable
from .unet import checked

OPACITY = (0.2, 0.7)
TEXT_PX = (12, 72)  # text height, log-uniform
LOGO_PX = (32, 256)  # a logo's long side, log-uniform
LARGEST = 0.6  # of the image's shorter side: a mark's largest size, so that it has image around it
LOGO_SIDE = 256  # logos are kept at most this large once read
FONT_SUFFIXES = (".ttf", ".otf")
MAX_LOGOS = 5000  # logos used from a directory: a spread sample of them when it has more
MAX_LOGO_PIXELS = 4096 * 4096
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwxz", "aeiouy"
_SYMBOLS = "©®™&@#$%*+"


@dataclass(frozen=True)
class Marks:
    """Where marks come from: fonts (.ttf, .otf) for text and PNG logos."""

    fonts: tuple[Path, ...]
    logos: tuple[Path, ...] = ()
    badges: bool = True  # logos drawn here besides those of `logos`

    def __post_init__(self) -> None:
        if not self.fonts:
            raise LatentzipError("watermarks need at least one font (.ttf or .otf)")

    @classmethod
    def default(cls) -> "Marks":
        """The fonts matplotlib ships (DejaVu and STIX: sans, serif, mono, bold, italic),
        and drawn badges for logos."""
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        return cls(tuple(sorted(p for p in ttf.glob("*.ttf") if p.name.startswith(("DejaVu", "STIXGeneral")))))

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], with_default: bool = True) -> "Marks":
        """The fonts and PNG logos under `directory` (searched recursively), with the
        default fonts and drawn badges unless `with_default` is False."""
        root = Path(directory)
        if not root.is_dir():
            raise LatentzipError(f"no directory {printable(os.fspath(directory), 200)} of marks")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        fonts = tuple(p for p in files if p.suffix.lower() in FONT_SUFFIXES)
        logos = [p for p in files if p.suffix.lower() == ".png"]
        if not fonts and not logos:
            raise LatentzipError(f"{printable(os.fspath(directory), 200)} holds no fonts (.ttf, .otf) or logos (.png)")
        if len(logos) > MAX_LOGOS:
            logos = [logos[round(k * (len(logos) - 1) / (MAX_LOGOS - 1))] for k in range(MAX_LOGOS)]
        for logo in logos:
            _check_logo(logo)
        base = cls.default().fonts if with_default else ()
        return cls(base + fonts, tuple(logos), with_default)

    def describe(self) -> str:
        logos = [f"{len(self.logos):,} logos"] * bool(self.logos) + ["drawn badges"] * self.badges
        return f"text in {len(self.fonts)} fonts" + (f", {' and '.join(logos)}" if logos else "")

    def layer(self, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random marks for an h x w image, as one layer: (alpha (h, w), colour (h, w, 3)),
        float32 in [0, 1]; alpha is 0 where no mark is."""
        alpha = np.zeros((h, w), np.float32)
        colour = np.zeros((h, w, 3), np.float32)
        count = 1 + int(rng.random() < 0.4) + int(rng.random() < 0.15)
        for k in range(count):
            kind = rng.random()
            if kind < 0.15 and k == 0:
                cover, tint = self._tiled_text(h, w, rng)
                top = left = 0
            else:
                logo = kind >= 0.6 and (self.logos or self.badges)
                largest = int(LARGEST * min(h, w))
                cover, tint = self._logo(rng, largest) if logo else self._text(rng, largest)
                cover, tint = _turned(cover, tint, rng)
                top = int(rng.integers(-cover.shape[0] // 2, max(1, h - cover.shape[0] // 2)))
                left = int(rng.integers(-cover.shape[1] // 2, max(1, w - cover.shape[1] // 2)))
            _blend(alpha, colour, cover * rng.uniform(*OPACITY), tint, top, left)
        return alpha, colour

    def _text(self, rng: np.random.Generator, largest: int) -> tuple[np.ndarray, np.ndarray]:
        font = _font(self.fonts[rng.integers(len(self.fonts))], _log_uniform(rng, TEXT_PX, largest // 3))
        return _rendered(_phrase(rng), font), _text_colour(rng)

    def _tiled_text(self, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One phrase repeated on a grid over the whole image, the grid turned."""
        font = _font(self.fonts[rng.integers(len(self.fonts))], _log_uniform(rng, (TEXT_PX[0], TEXT_PX[1] // 2)))
        word = _rendered(_phrase(rng), font)
        side = int(math.hypot(h, w)) + 2
        canvas = np.zeros((side, side), np.float32)
        dy, dx = word.shape[0] * rng.uniform(2, 5), word.shape[1] * rng.uniform(1.3, 2.5)
        for row, y in enumerate(np.arange(0, side - word.shape[0], dy).astype(int)):
            shift = (row % 2) * dx / 2
            for x in np.arange(shift, side - word.shape[1], dx).astype(int):
                canvas[y : y + word.shape[0], x : x + word.shape[1]] = np.maximum(
                    canvas[y : y + word.shape[0], x : x + word.shape[1]], word)
        turned = np.asarray(Image.fromarray(canvas).rotate(rng.uniform(-45, 45), Image.BILINEAR))
        top, left = (side - h) // 2, (side - w) // 2
        cover = np.ascontiguousarray(turned[top : top + h, left : left + w]).clip(0, 1)
        return cover, _text_colour(rng)

    def _logo(self, rng: np.random.Generator, largest: int) -> tuple[np.ndarray, np.ndarray]:
        side = _log_uniform(rng, LOGO_PX, largest)
        if self.logos and (not self.badges or rng.random() < 0.7):
            rgba = _logo_file(self.logos[rng.integers(len(self.logos))])
        else:
            rgba = self._badge(rng)
        scale = side / max(rgba.size)
        rgba = rgba.convert("RGBa").resize((max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))),
                                           Image.BILINEAR).convert("RGBA")
        array = np.asarray(rgba, np.float32) / 255.0
        return array[..., 3], array[..., :3]

    def _badge(self, rng: np.random.Generator) -> Image.Image:
        """A drawn logo: a filled or outlined shape, sometimes with a symbol or initials."""
        size = 128
        image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        first, second = _rgb(rng), _rgb(rng)
        box = (8, 8 + int(rng.integers(0, 32)) * int(rng.random() < 0.3), size - 8, size - 8)
        outline = int(rng.integers(4, 14)) if rng.random() < 0.4 else 0
        shape = int(rng.integers(4))
        fill = None if outline else first
        if shape == 0:
            draw.ellipse(box, fill=fill, outline=first if outline else None, width=outline)
        elif shape == 1:
            draw.rounded_rectangle(box, radius=int(rng.integers(0, 30)), fill=fill, outline=first if outline else None,
                                   width=outline)
        elif shape == 2:
            draw.regular_polygon((size / 2, size / 2, size / 2 - 8), int(rng.integers(3, 9)), rotation=rng.uniform(0, 90),
                                 fill=fill, outline=first if outline else None, width=outline)
        else:
            points = int(rng.integers(5, 9))
            star = [(size / 2 + (size / 2 - 8) * (1 if k % 2 == 0 else 0.45) * math.cos(math.pi * k / points),
                     size / 2 + (size / 2 - 8) * (1 if k % 2 == 0 else 0.45) * math.sin(math.pi * k / points))
                    for k in range(2 * points)]
            draw.polygon(star, fill=first)
        if rng.random() < 0.6:
            text = _SYMBOLS[rng.integers(len(_SYMBOLS))] if rng.random() < 0.5 else _syllables(rng, 1).upper()[:2]
            font = _font(self.fonts[rng.integers(len(self.fonts))], int(rng.integers(40, 72)))
            draw.text((size / 2, size / 2), text, font=font, fill=second, anchor="mm")
        return image


def watermark(images: Sequence[np.ndarray], marks: Marks | None = None,
              seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Watermarked copies of uint8 images ((H, W) or (H, W, C), C = 1 to 4; alpha is left
    as it is) and each one's mark coverage (H, W) in [0, 1]: 0 where the image is
    untouched. Reproducible by `seed`; `marks` defaults to `Marks.default()`."""
    marks = marks or Marks.default()
    rng = np.random.default_rng(seed)
    marked, covers = [], []
    for given in images:
        image = checked(given, "watermark")
        alpha, colour = marks.layer(image.shape[0], image.shape[1], rng)
        grey = image.shape[-1] in (1, 2)
        body = image[..., : 1 if grey else 3].astype(np.float32) / 255.0
        tint = colour.mean(-1, keepdims=True) if grey else colour
        out = image.copy()
        out[..., : body.shape[-1]] = np.round(255.0 * ((1 - alpha[..., None]) * body + alpha[..., None] * tint))
        marked.append(out.reshape(np.shape(given)))
        covers.append(alpha)
    return marked, covers


def _blend(alpha: np.ndarray, colour: np.ndarray, cover: np.ndarray, tint: np.ndarray, top: int, left: int) -> None:
    """Lay one mark (coverage times opacity, colour (3,) or (h, w, 3)) over the layer at
    (top, left), clipped to it: the layer stays the blend of all marks so far."""
    h, w = alpha.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + cover.shape[0], h), min(left + cover.shape[1], w)
    if y0 >= y1 or x0 >= x1:
        return
    a = cover[y0 - top : y1 - top, x0 - left : x1 - left, None]
    c = tint[y0 - top : y1 - top, x0 - left : x1 - left] if tint.ndim == 3 else tint
    old_a, old_c = alpha[y0:y1, x0:x1, None], colour[y0:y1, x0:x1]
    new_a = 1 - (1 - old_a) * (1 - a)
    colour[y0:y1, x0:x1] = np.where(new_a > 0, (a * c + (1 - a) * old_a * old_c) / np.maximum(new_a, 1e-12), 0)
    alpha[y0:y1, x0:x1] = new_a[..., 0]


def _turned(cover: np.ndarray, tint: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half the marks turned by up to 45 degrees (colour premultiplied, so edges keep it)."""
    if rng.random() < 0.5:
        return cover, tint
    angle = rng.uniform(-45, 45)
    if tint.ndim == 1:
        return np.asarray(Image.fromarray(cover).rotate(angle, Image.BILINEAR, expand=True)).clip(0, 1), tint
    rgba = np.concatenate([tint, cover[..., None]], axis=-1)
    image = Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA").convert("RGBa")
    array = np.asarray(image.rotate(angle, Image.BILINEAR, expand=True).convert("RGBA"), np.float32) / 255.0
    return array[..., 3], array[..., :3]


def _rendered(text: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(image).text((-left, -top), text, font=font, fill=255)
    return np.asarray(image, np.float32) / 255.0


def _phrase(rng: np.random.Generator) -> str:
    """A made-up mark text: a name, a domain, a handle or a copyright line."""
    name = _syllables(rng, int(rng.integers(1, 4)))
    name = name.upper() if rng.random() < 0.3 else name.capitalize()
    form = int(rng.integers(6))
    if form == 0:
        return f"© {name} {rng.integers(1990, 2030)}"
    if form == 1:
        return f"www.{name.lower()}.{('com', 'net', 'org', 'io', 'de')[rng.integers(5)]}"
    if form == 2:
        return f"@{name.lower()}{rng.integers(100) if rng.random() < 0.3 else ''}"
    if form == 3:
        return f"{name} {_syllables(rng, int(rng.integers(1, 3))).capitalize()}"
    return name


def _syllables(rng: np.random.Generator, count: int) -> str:
    return "".join(_CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))]
                   + (_CONSONANTS[rng.integers(len(_CONSONANTS))] if rng.random() < 0.3 else "") for _ in range(count))


def _text_colour(rng: np.random.Generator) -> np.ndarray:
    pick = rng.random()
    if pick < 0.45:
        return np.ones(3, np.float32)
    if pick < 0.65:
        return np.zeros(3, np.float32)
    if pick < 0.8:
        return np.full(3, rng.uniform(0.2, 0.9), np.float32)
    return np.array(_rgb(rng), np.float32) / 255.0


def _rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, 3))
    return red, green, blue


def _log_uniform(rng: np.random.Generator, bounds: tuple[int, int], largest: int | None = None) -> int:
    """Log-uniform in bounds, the upper one lowered to `largest` (not below the lower)."""
    high = max(bounds[0], min(bounds[1], largest)) if largest is not None else bounds[1]
    return int(round(math.exp(rng.uniform(math.log(bounds[0]), math.log(high)))))


@lru_cache(maxsize=256)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise LatentzipError(f"cannot read the font {printable(str(path), 200)} ({exc})") from None


def _check_logo(path: Path) -> None:
    """Refuse, before any training, a logo that cannot be read or is too large to."""
    try:
        with Image.open(path) as image:
            pixels = image.width * image.height
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise LatentzipError(f"cannot read the logo {printable(str(path), 200)} ({exc})") from None
    if pixels > MAX_LOGO_PIXELS:
        raise LatentzipError(f"the logo {printable(str(path), 200)} has {pixels:,} pixels; marks take logos of up to "
                             f"{MAX_LOGO_PIXELS:,} (make it smaller)")


@lru_cache(maxsize=512)
def _logo_file(path: Path) -> Image.Image:
    """A logo as RGBA, at most LOGO_SIDE on its long side."""
    try:
        with Image.open(path) as image:
            image.load()
            rgba = image.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise LatentzipError(f"cannot read the logo {printable(str(path), 200)} ({exc})") from None
    rgba.thumbnail((LOGO_SIDE, LOGO_SIDE), Image.LANCZOS)
    return rgba
