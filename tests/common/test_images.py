"""`load_image`: every source a user can hand radtune opens into the right PIL mode."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from radtune.common.images import ImageLoadError, load_image


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_path_bytes_and_modes(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L")
    path = tmp_path / "x.png"
    gray.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)
    assert np.array_equal(np.asarray(rgb)[..., 0], np.asarray(gray))
    assert load_image(str(path), mode="L").mode == "L"
    assert np.array_equal(np.asarray(load_image(_png_bytes(gray), mode=None)), np.asarray(gray))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 4000, 16, dtype=np.uint16).reshape(4, 4)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    loaded = np.asarray(load_image(path, mode="L"))
    assert loaded.min() == 0 and loaded.max() == 255
    assert np.all(np.diff(loaded.ravel().astype(int)) >= 0)  # order kept


def test_rgba_composites_on_black(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (200, 200, 200, 0))
    path = tmp_path / "a.png"
    rgba.save(path)
    assert np.asarray(load_image(path, mode="L")).max() == 0


def test_url(httpserver):
    gray = Image.new("L", (5, 3), 77)
    httpserver.expect_request("/img.png").respond_with_data(_png_bytes(gray), content_type="image/png")
    image = load_image(httpserver.url_for("/img.png"), mode="L")
    assert image.size == (5, 3) and np.asarray(image).max() == 77


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_shipped_dicom_files_open(name):
    path = get_testdata_file(name)
    image = load_image(path, mode=None)
    dataset = pydicom.dcmread(path)
    assert image.mode == "L"
    assert image.size == (dataset.Columns, dataset.Rows)
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255  # full 8-bit range used
    # Brighter stored values stay brighter (no VOI LUT in these files: a monotonic rescale).
    raw = dataset.pixel_array.astype(float)
    assert np.corrcoef(raw.ravel(), pixels.ravel())[0, 1] > 0.99


def _dicom_bytes(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def test_dicom_monochrome1_is_inverted_and_window_applied():
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    normal = np.asarray(load_image(_dicom_bytes(dataset), mode="L")).astype(int)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.asarray(load_image(_dicom_bytes(dataset), mode="L")).astype(int)
    assert np.array_equal(inverted, 255 - normal)

    dataset.PhotometricInterpretation = "MONOCHROME2"
    hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    center = float(np.median(hu))
    dataset.WindowCenter, dataset.WindowWidth = center, 50.0
    windowed = np.asarray(load_image(_dicom_bytes(dataset), mode="L")).astype(int)
    # A narrow window saturates everything well outside it.
    assert np.all(windowed[hu < center - 100] == 0)
    assert np.all(windowed[hu > center + 100] == 255)


def test_missing_and_garbage_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match="garbage.jpg"):
        load_image(garbage)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(_png_bytes(Image.new("L", (64, 64), 3))[:60])
    with pytest.raises(ImageLoadError, match="truncated.png"):
        load_image(truncated)
