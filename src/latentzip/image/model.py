"""The autoencoder as one module: analysis -> latent codec -> synthesis.

`forward` is for training (the reconstruction and each image's estimated bits); coding
goes through `analyse`, the latent codec's integer symbols, and the codec's exact
synthesis (see codec.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .latents import LatentCodec, build_latents
from .transforms import NetConfig, build

LOGVAR_RANGE = (-12.0, 6.0)


@dataclass
class Output:
    x_hat: torch.Tensor  # reconstruction, same size as the input
    bits: torch.Tensor  # estimated bits of each image's latents
    y: torch.Tensor  # latents before quantization
    kl: torch.Tensor | None  # VAE only: KL(q(z|x) || N(0, I)) per image, averaged


class Autoencoder(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.analysis, self.synthesis = build(cfg)
        self.latents: LatentCodec = build_latents(cfg)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents (N, latent[, h, w]) and, for the VAE, the posterior log-variance."""
        out = self.analysis(x)
        if self.cfg.record.variational:
            mean, logvar = out.chunk(2, dim=1)
            return mean, logvar.clamp(*LOGVAR_RANGE)
        return out, None

    def forward(self, x: torch.Tensor, quality: int = 0) -> Output:
        y, logvar = self._encode(x)
        kl = None
        if logvar is not None:
            kl = 0.5 * (y.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
            _, bits = self.latents(y, quality)  # the rate of the mean, which is what is coded
            y_hat, _ = self.latents(y + torch.randn_like(y) * (0.5 * logvar).exp(), quality)
        else:
            y_hat, bits = self.latents(y, quality)
        return Output(self.synthesise(y_hat, x.shape[-2:], clamp=False, quality=quality), bits, y, kl)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """Float latents for coding (the VAE codes its posterior mean)."""
        return self._encode(x)[0]

    def synthesise(self, y_hat: torch.Tensor, size: tuple[int, int], clamp: bool = True,
                   quality: int | None = None) -> torch.Tensor:
        """Pixels of `size`, post-filtered for `quality` (0-based) where the model has a
        post-filter (transforms.PostFilter) and a quality is given."""
        x_hat = (self.synthesis(y_hat, quality) if self.cfg.post else self.synthesis(y_hat))[..., : size[0], : size[1]]
        return x_hat.clamp(0.0, 1.0) if clamp else x_hat
