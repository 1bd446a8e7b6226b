"""What a trained codec does besides compressing: clean, flag and summarise images.

Each application uses the codec's public API, as a user would: `reconstruct` (denoising
and reconstruction error), `code_bits` (what an image costs under the learned prior) and
`latents` (the codes themselves).
"""

from .anomaly import AnomalyDetector, AnomalyScores, train_detector
from .denoise import add_noise, denoise, trained_noise
from .embed import embed, write_codes

__all__ = ["AnomalyDetector", "AnomalyScores", "add_noise", "denoise", "embed", "train_detector", "trained_noise",
           "write_codes"]
