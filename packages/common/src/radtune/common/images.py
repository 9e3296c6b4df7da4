"""Open any image radtune meets (a path, a URL, raw bytes or a DICOM file) as a PIL image.

Every package goes through `load_image` so that a predict command reads exactly what training read.
DICOM pixel data is turned into a display image the way a radiologist's viewer does: modality LUT
(rescale slope/intercept), then the VOI LUT or window centre/width, then scaling to 8 bits, with
MONOCHROME1 (white = low values) inverted so bone is always bright.

The size an image declares in its header (PIL's, or a DICOM file's Rows × Columns × frames) is checked against
`max_pixels` before anything is decoded: a file of a few kilobytes can declare gigabytes of pixels.
"""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ImageSource = str | Path | bytes | Image.Image

DICOM_SUFFIXES = (".dcm", ".dicom")
URL_TIMEOUT_S = 30
# PIL's own decompression-bomb threshold (about 89 megapixels): a radiograph is far below it.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# The deflated DICOM transfer syntax compresses the whole data set: this much of it is inflated to read the header.
_DICOM_HEADER_BYTES = 256 * 1024
_DEFLATED = "1.2.840.10008.1.2.1.99"


class ImageLoadError(ValueError):
    """An image source exists but cannot be decoded."""


class ImageTooLargeError(ImageLoadError):
    """An image whose header declares more pixels than allowed; nothing was decoded."""


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _looks_like_dicom(data: bytes) -> bool:
    # DICOM Part 10 files carry a 128-byte preamble followed by the magic "DICM".
    return len(data) >= 132 and data[128:132] == b"DICM"


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric array to 0..255 (a constant image becomes all zeros)."""
    array = array.astype(np.float64)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.clip(np.round((array - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def dicom_to_image(dataset) -> Image.Image:
    """Turn a `pydicom.Dataset` into an 8-bit PIL image (`L` for grayscale, `RGB` for colour).

    Multi-frame images give their first frame.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    pixels = dataset.pixel_array
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples == 3:
        # pydicom already converts YBR colour spaces to RGB when decoding.
        return Image.fromarray(_to_uint8(pixels) if pixels.dtype != np.uint8 else pixels, mode="RGB")
    values = apply_modality_lut(pixels, dataset)
    values = apply_voi_lut(values, dataset, prefer_lut=True)
    image = _to_uint8(values)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 255 - image
    return Image.fromarray(image, mode="L")


def _dicom_declared_size(dataset) -> tuple[int, int, int] | None:
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    return columns, rows, max(frames, 1)


def _deflated_header(data: bytes):
    """The data set of a deflated DICOM file up to its Columns element, from its first `_DICOM_HEADER_BYTES` inflated
    (pydicom would inflate it whole, pixels included, before reading a single element); `None` when the file is
    not deflated or the header cannot be read that way."""
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset, read_preamble

    head = DicomBytesIO(data)
    try:
        if read_preamble(head, force=True) is None:
            return None
        meta = read_dataset(
            head, is_implicit_VR=False, is_little_endian=True, stop_when=lambda tag, *_: tag.group != 2
        )
        if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
            return None
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[head.tell() :], _DICOM_HEADER_BYTES)
        return read_dataset(
            DicomBytesIO(inflated),
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=lambda tag, *_: tag > 0x00280011,
        )
    except Exception:  # noqa: BLE001 - a header that cannot be read this way is read (and judged) by dcmread
        return None


def _check_size(size: tuple[int, ...], max_pixels: int | None, name: str, what: str) -> None:
    pixels = 1
    for value in size:
        pixels *= value
    if max_pixels and pixels > max_pixels:
        shape = "x".join(str(value) for value in size[:2]) + (
            f"x{size[2]} frames" if len(size) > 2 and size[2] > 1 else ""
        )
        raise ImageTooLargeError(f"{name}: {shape} pixels ({what}) > {max_pixels:,}; nothing was decoded")


def read_dicom(data: bytes, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Parse a DICOM file with pydicom, refusing one whose header declares more than `max_pixels` pixels (Rows ×
    Columns × frames) before its pixel data is decoded, or, for the deflated transfer syntax, inflated.

    Raises:
        `ImageTooLargeError`: the declared size is over `max_pixels`.
    """
    import pydicom

    if max_pixels:
        header = _deflated_header(data)
        size = _dicom_declared_size(header) if header is not None else None
        if size is not None:
            _check_size(size, max_pixels, name, "declared by the DICOM header")
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    size = _dicom_declared_size(dataset)
    if size is not None:
        _check_size(size, max_pixels, name, "declared by the DICOM header")
    return dataset


def _read_bytes(source: str | Path) -> bytes:
    if isinstance(source, str) and _is_url(source):
        try:
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_S) as response:
                return response.read()
        except OSError as error:
            raise ImageLoadError(f"could not download image from {source}: {error}") from error
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    return path.read_bytes()


def _normalise_mode(image: Image.Image, mode: str | None) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images (some PNG exports of radiographs) are scaled, not clipped, to 8 bits.
        image = Image.fromarray(_to_uint8(np.asarray(image)), mode="L")
    if mode is None or image.mode == mode:
        return image
    if image.mode in ("RGBA", "LA", "P") and mode in ("L", "RGB"):
        # Composite on black, the background of every radiograph, instead of dropping alpha to garbage.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def load_image(
    source: ImageSource, mode: str | None = "RGB", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open a path, URL, bytes or DICOM file as a fully decoded PIL image.

    Args:
        source (`str`, `Path`, `bytes` or `PIL.Image.Image`):
            A local path (PNG, JPEG, … or DICOM), an `http(s)://` URL, the raw bytes of a file, or an image.
        mode (`str` or `None`, *optional*, defaults to `"RGB"`):
            PIL mode of the result (`"RGB"` or `"L"`); `None` keeps the decoded mode, except that 16-bit and
            float images are always scaled to 8-bit `L`.
        max_pixels (`int`, *optional*, defaults to PIL's 89,478,485): refuse an image whose header declares more
            pixels (DICOM: Rows × Columns × frames), before decoding it; `None` for no limit.

    Returns:
        `PIL.Image.Image`: the decoded image, pixels loaded (a truncated file fails here, not later).

    Raises:
        `FileNotFoundError`: the path does not exist.
        `ImageLoadError`: the source exists but is not a decodable image; `ImageTooLargeError` (an `ImageLoadError`)
            when its header declares more than `max_pixels` pixels.
    """
    if isinstance(source, Image.Image):
        return _normalise_mode(source, mode)
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else _read_bytes(source)
    is_dicom = _looks_like_dicom(data) or name.lower().split("?")[0].endswith(DICOM_SUFFIXES)
    try:
        if is_dicom:
            image = dicom_to_image(read_dicom(data, name, max_pixels))
        else:
            image = Image.open(io.BytesIO(data))
            _check_size(image.size, max_pixels, name, "declared by the image header")
            image.load()
    except (Image.DecompressionBombError, ImageTooLargeError):
        raise
    except Exception as error:
        raise ImageLoadError(f"could not decode image {name}: {type(error).__name__}: {error}") from error
    return _normalise_mode(image, mode)


IMAGE_ABLATIONS = ("blank", "noise")


def ablated_images(images, kind: str, seed: int = 0, first_index: int = 0) -> list[Image.Image]:
    """The images replaced by a black image (`blank`) or uniform RGB noise (`noise`) of the same size.

    The image-ablation check of every evaluation feeds these in place of the real images: a model whose scores
    do not drop is not reading the image.

    Args:
        images (`Sequence`): PIL images or anything `load_image` opens (only their sizes are used).
        kind (`str`): `"blank"` or `"noise"`.
        seed (`int`, *optional*, defaults to `0`): seed of the noise.
        first_index (`int`, *optional*, defaults to `0`): index of `images[0]` in the whole evaluation set; the
            noise of item `i` is seeded by `(seed, i)`, so it does not depend on how the items are batched.
    """
    if kind not in IMAGE_ABLATIONS:
        raise ValueError(f"unknown ablation {kind!r}; choose from {IMAGE_ABLATIONS}")
    out = []
    for index, image in enumerate(images, start=first_index):
        width, height = (image if isinstance(image, Image.Image) else load_image(image)).size
        if kind == "blank":
            out.append(Image.new("RGB", (width, height)))
        else:
            rng = np.random.default_rng([seed, index])
            out.append(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB"))
    return out
