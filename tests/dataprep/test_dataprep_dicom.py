"""DICOM through the build's image path, on pydicom's own shipped files (compressed transfer syntaxes included)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from radtune.dataprep.image_processing import prepare_image

CASES = [
    # file, transfer syntax, expected mode, size (w, h)
    ("CT_small.dcm", "1.2.840.10008.1.2.1", "L", (128, 128)),  # explicit VR little endian, 16-bit
    ("MR_small.dcm", "1.2.840.10008.1.2.1", "L", (64, 64)),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "L", (64, 64)),  # RLE lossless (pylibjpeg-rle / pydicom)
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", "L", (256, 1024)),  # JPEG 2000 (pylibjpeg-openjpeg)
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", "RGB", (100, 100)),  # JPEG baseline YBR (pylibjpeg-libjpeg)
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "L", (64, 64)),  # JPEG-LS
]


@pytest.mark.parametrize("name,syntax,mode,size", CASES, ids=[c[0] for c in CASES])
def test_shipped_dicom_decodes_to_8_bit(name, syntax, mode, size):
    path = get_testdata_file(name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    prepared = prepare_image(path)
    image = Image.open(io.BytesIO(prepared.data))
    assert image.format == "PNG" and image.mode == mode and image.size == size
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.max() > pixels.min()  # windowed, not a flat image


def test_dicom_bytes_and_resize_keep_aspect_ratio():
    data = open(get_testdata_file("JPEG2000.dcm"), "rb").read()
    prepared = prepare_image(data, max_side=128)
    assert (prepared.width, prepared.height) == (32, 128)


def test_monochrome1_is_inverted(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    normal = np.asarray(Image.open(io.BytesIO(prepare_image(path).data)), dtype=np.int16)
    dataset = pydicom.dcmread(path)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    inverted_path = tmp_path / "mono1.dcm"
    dataset.save_as(inverted_path)
    inverted = np.asarray(Image.open(io.BytesIO(prepare_image(inverted_path).data)), dtype=np.int16)
    assert np.abs((255 - normal) - inverted).max() <= 1


def test_window_center_width_is_applied(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    dataset.WindowCenter, dataset.WindowWidth = 40, 80  # a narrow soft-tissue window saturates most pixels
    windowed_path = tmp_path / "window.dcm"
    dataset.save_as(windowed_path)
    pixels = np.asarray(Image.open(io.BytesIO(prepare_image(windowed_path).data)))
    saturated = np.mean((pixels == 0) | (pixels == 255))
    assert saturated > 0.5


@pytest.mark.parametrize("mode,size", [("L", (17, 9)), ("RGB", (5, 12))])
def test_fast_png_encoder_is_lossless(mode, size):
    from radtune.dataprep.image_processing import encode_png

    rng = np.random.default_rng(0)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    image = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.mode == mode and decoded.size == size
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_fast_png_encoder_takes_pixel_arrays():
    from radtune.dataprep.image_processing import encode_png

    pixels = np.random.default_rng(1).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels)))), pixels)
    with pytest.raises(ValueError, match="uint8 pixels"):
        encode_png(pixels.astype(np.uint16))


def test_pixel_hash_is_equal_for_equal_images_and_tells_mode_and_shape_apart():
    from radtune.dataprep.image_processing import pixel_hash

    pixels = np.arange(48, dtype=np.uint8)
    square = pixels[:16].reshape(4, 4)
    assert pixel_hash(square, "L") == pixel_hash(square.copy(), "L")
    assert pixel_hash(square, "L") != pixel_hash(pixels[:16].reshape(2, 8), "L")
    assert pixel_hash(pixels.reshape(4, 4, 3), "RGB") != pixel_hash(pixels.reshape(4, 12), "L")
    assert pixel_hash(np.asfortranarray(square), "L") == pixel_hash(square, "L")  # memory layout does not matter
