"""What autoencoders do besides compressing: clean, flag, summarise and colour images.

The first three use a trained codec's public API, as a user would: `reconstruct`
(denoising and reconstruction error), `code_bits` (what an image costs under the learned
prior) and `latents` (the codes themselves). Colourisation has a network and model file
of its own (`Colorizer`, trained by `train_colorizer`).
"""

from .anomaly import AnomalyDetector, AnomalyScores, train_detector
from .colorize import colorize
from .colornet import Colorizer
from .colortrain import ColorizeConfig, ColorizeResult, train_colorizer
from .denoise import add_noise, denoise, trained_noise
from .embed import embed, write_codes
from .lab import as_grey

__all__ = ["AnomalyDetector", "AnomalyScores", "ColorizeConfig", "ColorizeResult", "Colorizer", "add_noise", "as_grey",
           "colorize", "denoise", "embed", "train_colorizer", "train_detector", "trained_noise", "write_codes"]
