"""The spectrogram front-end of every audio model: waveform ``(batch, time)`` -> log-power spectrogram.

One module so that all models agree on what a spectrogram is (16 kHz, n_fft 512, hop 256, 96 mels by
default, as in the short-chunk CNN comparisons of Won et al., "Evaluation of CNN-based automatic music
tagging models", SMC 2020). It runs inside the model, on the input's device, in float32 with autocast
disabled: under fp16 the power of a loud bin overflows (65504 is the largest fp16) and the log of an
underflowed one is -inf, which several public tagging projects turned into NaN losses.

Two interchangeable backends, configured to give the same numbers:

- ``"torchaudio"``: ``torchaudio.transforms.MelSpectrogram`` (FFT), its power formed here. Mel only.
- ``"nnaudio"``: ``nnAudio.features.MelSpectrogram`` (the DFT as a 1-d convolution) and
  ``nnAudio.features.CQT1992v2`` for ``kind="cqt"``.

``kind="chroma"`` folds a long-window power spectrum (torch's STFT) into the 12 pitch classes, for harmony.

Both use a periodic Hann window, centred frames with reflect padding, the power spectrum, and Slaney mel
scale and area normalisation (librosa's defaults, which nnAudio copies). In the log domain they then differ
only by float32 round-off: under 0.01 dB on every bin within 80 dB of a clip's loudest one, growing only
in bins near the float32 noise floor (see tests/tagging/test_frontend.py). The front-end holds no state: its
windows and filterbanks are non-persistent buffers, so a model's weights load whatever the backend.
"""

import torch
import torchaudio
from nnAudio.features import CQT1992v2
from nnAudio.features import MelSpectrogram as NnAudioMelSpectrogram
from torch import nn

KINDS = ("mel", "cqt", "chroma")
BACKENDS = ("auto", "torchaudio", "nnaudio")
COMPRESSIONS = ("db", "logC")
# logC: log10(1 + LOGC_GAIN * power), the musicnn models' input (Pons & Serra 2019); the power is rounded
# to float16 first, as the wheel's extractor does and as their training spectrograms were stored, and held
# below float16's largest value so that out-of-range audio cannot make it infinite.
LOGC_GAIN = 10000.0
FLOAT16_MAX = 65504.0
# The lowest CQT bin when f_min is left at 0 Hz, where a constant-Q filter cannot sit: C1, librosa's default.
CQT_DEFAULT_F_MIN = 32.70
# The pitch range a chroma folds when f_min and f_max are left open: A1 (55 Hz, below it one FFT bin of a
# half-second window spans a semitone) to 4 kHz (above it, mostly upper harmonics and noise).
CHROMA_DEFAULT_RANGE = (55.0, 4000.0)
# Power floor before the log: 1e-10 is -100 dB, far below anything audible in [-1, 1] audio, and keeps
# digital silence finite.
POWER_FLOOR = 1e-10


class Frontend(nn.Module):
    """Log-power spectrogram in dB: ``(batch, time) -> (batch, n_features, n_frames(time))``, float32.

    The output is ``10 * log10(max(power, 1e-10))``: decibels relative to a full-scale power of 1, floored
    at -100 dB, with no per-clip normalisation (so a quiet track stays quiet). ``kind="mel"`` gives
    ``n_mels`` mel bands between ``f_min`` and ``f_max`` (default ``sample_rate / 2``); ``kind="cqt"``
    gives ``n_bins`` constant-Q bins, ``bins_per_octave`` per octave from ``f_min`` (0 means C1 = 32.70 Hz)
    and ignores ``n_fft`` and ``n_mels``; ``kind="chroma"`` gives the 12 pitch classes (C first) of the
    STFT's bins between ``f_min`` and ``f_max`` (0 and None mean 55 Hz and 4 kHz), each bin shared between
    its two nearest pitch classes by its distance in semitones from A = 440 Hz. Frames are centred: frame
    ``i`` is centred on sample ``i * hop_length``; with ``center=False`` (mel only) frame ``i`` starts there,
    so every frame is computed from the input's own samples (no padding) and a chunk cut with ``n_fft - hop``
    samples of context gives exactly the frames of the whole track.

    ``compression="logC"`` gives ``log10(1 + 10000 * power)`` instead of decibels, with the power rounded to
    float16 first: the input of the pretrained musicnn models (`tagging.models.musicnn`), as their wheel computes it.

    ``backend="auto"`` resolves at construction to the faster backend as measured by
    ``benchmarks/frontend.py``: torchaudio for mel on CPU; for CUDA the same choice, unmeasured (no GPU
    here; torch.stft runs on cuFFT where nnAudio runs a dense DFT convolution). The only CQT is nnAudio's.
    ``resolved_backend`` tells which one runs.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 256,
        n_mels: int = 96,
        f_min: float = 0.0,
        f_max: float | None = None,
        kind: str = "mel",
        backend: str = "auto",
        n_bins: int = 84,
        bins_per_octave: int = 12,
        compression: str = "db",
        center: bool = True,
    ):
        super().__init__()
        for name, value in [
            ("sample_rate", sample_rate),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("n_mels", n_mels),
            ("n_bins", n_bins),
            ("bins_per_octave", bins_per_octave),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Frontend: {name} must be a positive integer, got {value!r}")
        if kind not in KINDS:
            raise ValueError(f"Frontend: kind must be one of {KINDS}, got {kind!r}")
        if backend not in BACKENDS:
            raise ValueError(f"Frontend: backend must be one of {BACKENDS}, got {backend!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"Frontend: compression must be one of {COMPRESSIONS}, got {compression!r}")
        if not center and kind != "mel":
            raise ValueError(f"Frontend: center=False is for kind='mel' only, got kind={kind!r}")
        if kind == "chroma":
            if backend == "nnaudio":
                raise ValueError(
                    "Frontend: the chroma is folded from torch's STFT; use backend='auto' for kind='chroma'")
            f_min, f_max = f_min or CHROMA_DEFAULT_RANGE[0], f_max or min(CHROMA_DEFAULT_RANGE[1], sample_rate / 2)
        if kind == "cqt" and backend == "torchaudio":
            raise ValueError("Frontend: torchaudio has no CQT; use backend='nnaudio' or 'auto' for kind='cqt'")
        nyquist = sample_rate / 2
        if not 0 <= f_min < nyquist:
            raise ValueError(f"Frontend: f_min must be in [0, sample_rate / 2 = {nyquist}), got {f_min!r}")
        if kind != "cqt" and f_max is not None and not f_min < f_max <= nyquist:
            raise ValueError(
                f"Frontend: f_max must be in (f_min = {f_min}, sample_rate / 2 = {nyquist}], got {f_max!r}"
            )
        if kind == "cqt":
            if f_max is not None:
                raise ValueError(
                    "Frontend: f_max does not apply to kind='cqt'; its range is set by f_min, n_bins and "
                    f"bins_per_octave, got f_max={f_max!r}"
                )
            f_min = f_min or CQT_DEFAULT_F_MIN
            top = f_min * 2 ** ((n_bins - 1) / bins_per_octave)
            if top >= nyquist:
                raise ValueError(
                    f"Frontend: the top CQT bin (f_min * 2 ** ((n_bins - 1) / bins_per_octave) = {top:.0f} Hz) "
                    f"must be below sample_rate / 2 = {nyquist}; lower n_bins={n_bins} or f_min={f_min}"
                )

        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.kind = kind
        self.backend = backend
        self.compression = compression
        self.center = center
        self.n_fft = n_fft
        self.resolved_backend = "nnaudio" if kind == "cqt" or backend == "nnaudio" else "torchaudio"
        self.n_features = {"mel": n_mels, "cqt": n_bins, "chroma": 12}[kind]
        if kind == "cqt":
            self.transform = CQT1992v2(
                sr=sample_rate,
                hop_length=hop_length,
                fmin=f_min,
                n_bins=n_bins,
                bins_per_octave=bins_per_octave,
                output_format="Magnitude",
                verbose=False,
            )
            # Reflect padding of half the longest (lowest) kernel needs at least that many samples.
            self.min_samples = self.transform.kernel_width // 2 + 1
        elif kind == "chroma":
            self.transform = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length,
                                                               window_fn=torch.hann_window, power=None,
                                                               center=True, pad_mode="reflect")
            self.register_buffer("chroma_fb", chroma_filterbank(sample_rate, n_fft, f_min, f_max), persistent=False)
            self.min_samples = n_fft // 2 + 1
        elif self.resolved_backend == "torchaudio":
            self.transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate,
                n_fft=n_fft,
                hop_length=hop_length,
                f_min=f_min,
                f_max=f_max,
                n_mels=n_mels,
                window_fn=torch.hann_window,
                power=None,  # the complex STFT; _log_spectrum forms the power (see there)
                center=center,
                pad_mode="reflect",
                norm="slaney",
                mel_scale="slaney",
            )
            self.min_samples = n_fft // 2 + 1 if center else n_fft
        else:
            self.transform = NnAudioMelSpectrogram(
                sr=sample_rate,
                n_fft=n_fft,
                n_mels=n_mels,
                hop_length=hop_length,
                window="hann",
                center=center,
                pad_mode="reflect",
                power=2.0,
                htk=False,
                fmin=f_min,
                fmax=f_max,
                norm=1,
                verbose=False,
            )
            self.min_samples = n_fft // 2 + 1 if center else n_fft
        # Windows and filterbanks follow the module across devices but stay out of the state_dict.
        for module in self.transform.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames of the output for an input of ``n_samples`` samples."""
        if not self.center:
            return (n_samples - self.n_fft) // self.hop_length + 1
        return n_samples // self.hop_length + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(batch, time) -> (batch, n_features, n_frames(time))`` in dB, float32 whatever the input dtype."""
        if wave.ndim != 2:
            raise ValueError(f"Frontend: wave must be (batch, time), got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.min_samples:
            raise ValueError(
                f"Frontend: wave has {wave.shape[1]} samples, needs at least {self.min_samples} "
                "(reflect padding); pad short clips first"
            )
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._log_spectrum(wave.float())

    def _log_spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        if self.kind == "chroma":
            stft = self.transform(wave)
            spectrum = torch.einsum("cf,bft->bct", self.chroma_fb, stft.real.square().addcmul_(stft.imag, stft.imag))
        elif self.resolved_backend == "torchaudio":
            # MelSpectrogram's own two stages, with the power as re² + im²: its power=2 path takes abs() of
            # the complex STFT and squares it, 180-200 ms on CPU for a 32 x 30 s batch against 50-70 ms.
            stft = self.transform.spectrogram(wave)
            spectrum = self.transform.mel_scale(stft.real.square().addcmul_(stft.imag, stft.imag))
        elif self.kind == "cqt":
            spectrum = self.transform(wave).square()  # nnAudio's CQT gives magnitudes
        else:
            spectrum = self.transform(wave)
        if self.compression == "logC":
            return torch.log10(1.0 + LOGC_GAIN * spectrum.clamp(0.0, FLOAT16_MAX).half().float())
        return 10.0 * torch.log10(spectrum.clamp_min(POWER_FLOOR))

    def _apply(self, fn, recurse=True):
        # model.half() or bf16-true precision would cast the kernels too; the front-end stays float32.
        super()._apply(fn, recurse)
        for module in self.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer.is_floating_point() and buffer.dtype != torch.float32:
                    setattr(module, name, buffer.float())
        return self


def chroma_filterbank(sample_rate: int, n_fft: int, f_min: float, f_max: float) -> torch.Tensor:
    """``(12, n_fft // 2 + 1)``: how much of each STFT bin's power goes to each pitch class, C first.

    A bin between ``f_min`` and ``f_max`` at ``p`` semitones (MIDI pitch, fractional) is shared between the
    two pitch classes nearest ``p``, each by one minus its distance in semitones; other bins count nothing."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    pitch = 69 + 12 * torch.log2(freqs.clamp_min(1e-3) / 440.0)
    distance = (pitch.unsqueeze(0) - torch.arange(12, dtype=torch.float64).unsqueeze(1)).remainder(12)
    distance = torch.minimum(distance, 12 - distance)  # circular, in semitones
    weights = (1 - distance).clamp_min(0) * ((freqs >= f_min) & (freqs <= f_max))
    return weights.float()
