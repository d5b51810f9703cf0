"""Key profiles and the Krumhansl-Schmuckler key finder: which of the 24 keys a pitch-class profile fits.

A neutral module: the tagger's harmonic branch (`tagging.models.layers.HarmonicFeatures`), the signal-processing
key estimator (`tagging.tempo_key`) and the toy catalog's key label (`toycatalog.realistic.written_key`)
all read their profiles here, so the toy catalog labels its tracks without importing a tagger.

Profiles are tonic first, one weight per pitch class (tonic, minor second, ..., major seventh):

- ``KEY_PROFILES``: Krumhansl and Kessler (1982; Krumhansl, "Cognitive Foundations of Musical Pitch",
  1990), listeners' ratings of how well each pitch class fits a major or a minor context.
- ``TEMPERLEY_PROFILES``: Temperley, "What's key for key? The Krumhansl-Schmuckler key-finding algorithm
  reconsidered" (Music Perception 17(1), 1999), revised by hand to fix the KK profiles' known errors.
"""

from __future__ import annotations

import torch

KEY_PROFILES = {
    "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
}
TEMPERLEY_PROFILES = {
    "major": (5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0),
    "minor": (5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0),
}
PROFILES = {"krumhansl": KEY_PROFILES, "temperley": TEMPERLEY_PROFILES}
MODES = ("major", "minor")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def key_templates(profiles: dict = KEY_PROFILES) -> torch.Tensor:
    """The 24 keys' profiles, centred and of unit norm: ``(2, 12, 12)`` [mode (major, minor), tonic, pitch class]."""
    modes = torch.tensor([profiles[mode] for mode in MODES])
    rotations = (torch.arange(12).unsqueeze(0) - torch.arange(12).unsqueeze(1)).remainder(12)  # [tonic, pc]
    keys = modes[:, rotations]  # each profile with its tonic on `tonic`
    keys = keys - keys.mean(dim=2, keepdim=True)
    return keys / keys.norm(dim=2, keepdim=True)


def key_fits(profile: torch.Tensor, templates: torch.Tensor | None = None) -> torch.Tensor:
    """Pitch-class profiles ``(batch, 12)`` (non-negative weights, C first) -> ``(batch, 2, 12)``: the Pearson
    correlation of each with every key of ``templates`` (`key_templates`; Krumhansl-Kessler by default),
    ``[mode, tonic]``. A flat profile fits no key (0)."""
    if profile.dim() != 2 or profile.shape[1] != 12:
        raise ValueError(f"pitch-class profiles are (batch, 12), got shape {tuple(profile.shape)}")
    templates = key_templates() if templates is None else templates
    centred = profile - profile.mean(dim=1, keepdim=True)
    centred = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("bp,mrp->bmr", centred, templates.to(centred.dtype))


def best_key(profile, profiles: dict = KEY_PROFILES) -> tuple[int, str]:
    """(tonic pitch class, 0 = C; mode) of the key whose profile correlates best with a 12-bin ``profile``."""
    fits = key_fits(torch.as_tensor(profile, dtype=torch.float32).reshape(1, 12), key_templates(profiles))[0]
    mode, tonic = divmod(int(fits.flatten().argmax()), 12)
    return tonic, MODES[mode]


def key_name(tonic: int, mode: str) -> str:
    """``(9, "minor") -> "A minor"``."""
    return f"{PITCH_CLASSES[tonic % 12]} {mode}"
