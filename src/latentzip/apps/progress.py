"""Chunked work with a progress bar, so scoring a big set shows how far it got."""

from __future__ import annotations

from typing import Iterable, Iterator, Sized, TypeVar

from tqdm.auto import tqdm

from ..image.codec import ImagesLike

CHUNK = 1000
T = TypeVar("T")


def chunks(images: ImagesLike, desc: str, progress: bool) -> Iterator[ImagesLike]:
    """Consecutive slices of `images`; the bar shows on a terminal, and only if asked."""
    with tqdm(total=len(images), desc=desc, unit="img", disable=None if progress else True, leave=False) as bar:
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            yield chunk
            bar.update(len(chunk))


def each(items: Iterable[T], desc: str, progress: bool) -> Iterator[T]:
    """The items one by one, with the same bar as `chunks`: for work done image by image."""
    total = len(items) if isinstance(items, Sized) else None
    yield from tqdm(items, total=total, desc=desc, unit="img", disable=None if progress else True, leave=False)
