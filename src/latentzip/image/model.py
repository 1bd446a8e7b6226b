"""The autoencoder as one module: analysis -> quantization -> prior -> synthesis.

`forward` is for training (it returns the reconstruction and the likelihoods); coding
goes through `analyse` and `synthesise` with rounded latents and the frozen tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .entropy import FactorizedPrior, quantize
from .transforms import NetConfig, build, pad_to_stride


@dataclass
class Output:
    x_hat: torch.Tensor  # reconstruction, same size as the input, in [0, 1]
    likelihoods: torch.Tensor  # P(q) of every latent under the prior
    y: torch.Tensor  # latents before quantization
    kl: torch.Tensor | None  # VAE only: KL(q(z|x) || N(0, I)) per image, averaged


class Autoencoder(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.analysis, self.synthesis = build(cfg)
        self.prior = FactorizedPrior(cfg.latent)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents (N, latent[, h, w]) and, for the VAE, the posterior log-variance."""
        if not self.cfg.dense:
            x = pad_to_stride(x, self.cfg.stride)
        out = self.analysis(x)
        if self.cfg.arch == "vae":
            mean, logvar = out.chunk(2, dim=1)
            return mean, logvar.clamp(-12.0, 6.0)
        return out, None

    def _decode(self, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x_hat = self.synthesis(q)
        return x_hat[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor) -> Output:
        y, logvar = self._encode(x)
        kl = None
        if logvar is not None:
            kl = 0.5 * (y.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
            y_dec = y + torch.randn_like(y) * (0.5 * logvar).exp()
        else:
            y_dec = y
        likelihoods = self.prior.likelihood(quantize(y, "noise"))
        x_hat = self._decode(quantize(y_dec, "ste"), x.shape[-2:])
        return Output(x_hat, likelihoods, y, kl)

    @torch.no_grad()
    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        """Integer latents for coding (the VAE codes its posterior mean)."""
        return torch.round(self._encode(x)[0])

    @torch.no_grad()
    def synthesise(self, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self._decode(q, size).clamp(0.0, 1.0)
