"""The spectrogram front-end: shapes, backend agreement, no state, float32 under autocast, argument errors."""

import math

import pytest
import torch
from torch import nn

from tagging.frontend import Frontend

RATE = 16000


def _signals(seconds: float = 2.0) -> torch.Tensor:
    """White noise, a chord of sines, and a quiet sine over faint noise: (3, time)."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(round(seconds * RATE)) / RATE
    noise = 0.1 * torch.randn(t.numel(), generator=generator)
    chord = sum(0.2 * torch.sin(2 * math.pi * f * t) for f in (110.0, 440.0, 3000.0, 7000.0))
    quiet = 0.01 * torch.sin(2 * math.pi * 250.0 * t) + 1e-4 * torch.randn(t.numel(), generator=generator)
    return torch.stack([noise, chord, quiet])


@pytest.mark.parametrize(
    ("arguments", "rows"),
    [({}, 96), ({"backend": "nnaudio", "n_mels": 64}, 64), ({"kind": "cqt", "n_bins": 72}, 72),
     ({"kind": "chroma"}, 12)],
)
@pytest.mark.parametrize("n_samples", [16000, 16255, 16256])
def test_shape_contract(arguments, rows, n_samples):
    frontend = Frontend(**arguments)
    out = frontend(torch.randn(2, n_samples) * 0.1)
    assert out.shape == (2, rows, frontend.n_frames(n_samples)) == (2, frontend.n_features, n_samples // 256 + 1)
    assert out.dtype == torch.float32


def test_auto_resolves_to_the_measured_fastest_backend():
    assert Frontend().resolved_backend == "torchaudio"
    assert Frontend(kind="cqt").resolved_backend == "nnaudio"
    assert Frontend(backend="nnaudio").resolved_backend == "nnaudio"


@pytest.mark.parametrize("band", [{}, {"f_min": 30.0, "f_max": 7600.0, "n_mels": 128}])
def test_backends_agree_in_decibels(band):
    # Same window, padding, power and Slaney filterbank: what remains is float32 round-off of an FFT
    # (torchaudio) against a DFT-by-convolution (nnAudio). Relative to each bin's power it is ~1e-5 near
    # the top and grows as the bin's power falls towards the round-off of the loud ones; within 80 dB of a
    # clip's loudest bin it stays under 0.01 dB (measured: 0.003 dB).
    wave = _signals()
    fft = Frontend(backend="torchaudio", **band)(wave)
    dft = Frontend(backend="nnaudio", **band)(wave)
    meaningful = fft > fft.amax(dim=(1, 2), keepdim=True) - 80.0
    assert meaningful.float().mean() > 0.5
    assert (fft - dft)[meaningful].abs().max() < 0.01
    assert (fft - dft).abs().max() < 0.5  # even in bins 100 dB down


@pytest.mark.parametrize("arguments", [{}, {"backend": "nnaudio"}, {"kind": "cqt"}])
def test_front_end_has_no_state(arguments):
    frontend = Frontend(**arguments)
    assert frontend.state_dict() == {}
    assert list(frontend.parameters()) == []


def test_weights_load_whatever_the_backend():
    def model(backend):
        torch.manual_seed(0)
        return nn.Sequential(Frontend(backend=backend), nn.Conv1d(96, 4, 3))

    trained = model("torchaudio")
    with torch.no_grad():
        trained[1].weight.mul_(3.0)
    served = model("nnaudio")
    served.load_state_dict(trained.state_dict(), strict=True)
    assert list(trained.state_dict()) == ["1.weight", "1.bias"]
    wave = _signals()
    torch.testing.assert_close(served(wave), trained(wave), atol=0.05, rtol=1e-3)


@pytest.mark.parametrize("arguments", [{}, {"backend": "nnaudio"}, {"kind": "cqt"}])
def test_float32_under_bf16_autocast_and_finite_on_silence(arguments):
    frontend = Frontend(**arguments)
    wave = _signals(1.0)
    expected = frontend(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frontend(wave)
        low_precision_input = frontend(wave.bfloat16())
        silence = frontend(torch.zeros(2, RATE))
    assert out.dtype == low_precision_input.dtype == silence.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    assert torch.isfinite(low_precision_input).all()
    assert torch.all(silence == -100.0)  # the power floor, 1e-10


@pytest.mark.parametrize("arguments", [{}, {"kind": "chroma"}])
def test_half_model_keeps_a_float32_front_end(arguments):
    frontend = Frontend(**arguments)
    model = nn.Sequential(frontend, nn.Conv1d(frontend.n_features, 4, 3)).half()
    assert {buffer.dtype for buffer in model[0].buffers()} == {torch.float32}
    out = model[0](_signals(1.0).half())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_cqt_puts_a_tone_in_its_semitone_bin():
    t = torch.arange(2 * RATE) / RATE
    out = Frontend(kind="cqt")(0.5 * torch.sin(2 * math.pi * 440.0 * t)[None])
    # Bins start at C1 = 32.70 Hz, 12 per octave: A4 = 440 Hz is 45 semitones up.
    assert int(out[0].mean(dim=1).argmax()) == 45


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "cqt", "backend": "torchaudio"}, "torchaudio has no CQT"),
        ({"backend": "librosa"}, "backend must be one of"),
        ({"kind": "stft"}, "kind must be one of"),
        ({"f_max": 9000.0}, "f_max must be in"),
        ({"f_min": 4000.0, "f_max": 3000.0}, "f_max must be in"),
        ({"f_min": -1.0}, "f_min must be in"),
        ({"n_mels": 0}, "n_mels must be a positive integer"),
        ({"hop_length": 2.5}, "hop_length must be a positive integer"),
        ({"kind": "cqt", "f_max": 4000.0}, "f_max does not apply to kind='cqt'"),
        ({"kind": "cqt", "n_bins": 120}, "top CQT bin"),
        ({"kind": "chroma", "backend": "nnaudio"}, "folded from torch's STFT"),
        ({"kind": "chroma", "f_min": 500.0, "f_max": 400.0}, "f_max must be in"),
    ],
)
def test_bad_arguments_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        Frontend(**arguments)


def test_bad_inputs_say_what_is_expected():
    frontend = Frontend()
    with pytest.raises(ValueError, match=r"must be \(batch, time\)"):
        frontend(torch.zeros(RATE))
    with pytest.raises(ValueError, match="needs at least 257"):
        frontend(torch.zeros(1, 100))


@pytest.mark.gpu
def test_cuda_under_fp16_autocast_matches_cpu():
    frontend = Frontend()
    wave = _signals()
    expected = frontend(wave)
    with torch.autocast("cuda", dtype=torch.float16):
        out = frontend.cuda()(wave.cuda().half())
    assert out.dtype == torch.float32 and out.device.type == "cuda" and torch.isfinite(out).all()
    meaningful = expected > expected.amax(dim=(1, 2), keepdim=True) - 60.0
    # The fp16 input itself is rounded to ~3 significant digits; the front-end adds nothing to that.
    assert (out.cpu() - expected)[meaningful].abs().max() < 0.5


def test_chroma_puts_a_tone_in_its_pitch_class():
    t = torch.arange(2 * RATE) / RATE
    frontend = Frontend(kind="chroma", n_fft=8192, hop_length=2048)
    for hz, pitch_class in [(440.0, 9), (110.0, 9), (261.63, 0), (92.50, 6)]:  # A4, A2, C4, F#2
        out = frontend(0.5 * torch.sin(2 * math.pi * hz * t)[None])
        assert out.shape == (1, 12, frontend.n_frames(2 * RATE)) and out.dtype == torch.float32
        profile = out[0].mean(dim=1)
        assert int(profile.argmax()) == pitch_class
        # Each STFT bin is shared between its two nearest pitch classes, so the window's main lobe (within
        # ~0.2 semitone at 440 Hz) leaks about a fifth of the power, -7 dB, into the neighbours; no more.
        assert profile.max() - profile.sort().values[-2] > 6
    # Below f_min (55 Hz by default) nothing is folded: away from the clip's edges (whose reflect padding
    # clicks), a 40 Hz tone leaves only the window's far side lobes, 60 dB under the same tone at 440 Hz.
    inside = frontend(0.5 * torch.sin(2 * math.pi * 40.0 * t)[None])[0, :, 2:-2].max()
    assert frontend(0.5 * torch.sin(2 * math.pi * 440.0 * t)[None])[0, :, 2:-2].max() - inside > 60
