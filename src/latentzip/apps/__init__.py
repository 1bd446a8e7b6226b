"""What autoencoders do besides compressing: clean, flag, summarise and colour images.

The first three use a trained codec's public API, as a user would: `reconstruct`
(denoising and reconstruction error), `code_bits` (what an image costs under the learned
prior) and `latents` (the codes themselves). Colourisation and watermark removal map an
image to one of the same size with no bottleneck between, so each has a U-Net and model
file of its own (`Colorizer` from `train_colorizer`, `MarkRemover` from `train_unmarker`;
`denoise` takes a watermark-removal model as it takes a codec).
"""

from .anomaly import AnomalyDetector, AnomalyScores, train_detector
from .colorize import colorize
from .colornet import Colorizer
from .colortrain import train_colorizer
from .denoise import add_noise, denoise, load_denoiser, trained_noise
from .embed import embed, write_codes
from .lab import as_grey
from .marknet import MarkRemover
from .marks import Marks, watermark
from .marktrain import train_unmarker
from .unettrain import UNetTrainConfig, UNetTrainResult

__all__ = ["AnomalyDetector", "AnomalyScores", "Colorizer", "MarkRemover", "Marks", "UNetTrainConfig", "UNetTrainResult",
           "add_noise", "as_grey", "colorize", "denoise", "embed", "load_denoiser", "train_colorizer", "train_detector",
           "train_unmarker", "trained_noise", "watermark", "write_codes"]
