"""Decode, check, normalise, resize and encode one image for a built dataset.

Every image is fully decoded, so a truncated file is caught at build time, never in a training loop. The
result is 8-bit `L` (grayscale sources, DICOM included) or `RGB`; with `max_side` the longer side is scaled
down to it, keeping the aspect ratio. A file that needs no change (JPEG or PNG, already `L`/`RGB`, small
enough) keeps its original bytes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image

try:
    # zlib-ng runs the run-length strategy used here almost twice as fast as zlib, and wrote the very same bytes on
    # every image compared.
    from zlib_ng import zlib_ng as zlib
except ImportError:  # an environment installed before zlib-ng became a dependency: a valid PNG all the same
    import zlib

from radtune.common.images import DEFAULT_MAX_PIXELS, ImageLoadError, ImageTooLargeError, load_image

_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_KEEP_FORMATS = {"JPEG": "JPEG", "PNG": "PNG"}

# Why a record is skipped: its image (here), or its text (the build and the readers: `empty_text`, `invalid_text`
# for text that is not UTF-8 or holds NUL bytes, `missing_report`).
SKIP_REASONS = (
    "missing_image",
    "unreadable_image",
    "truncated_image",
    "oversized_image",
    "empty_text",
    "invalid_text",
    "missing_report",
)


class ImageSkip(Exception):
    """An image the build must skip, with the reason it is counted under."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass
class PreparedImage:
    data: bytes
    width: int
    height: int
    mode: str
    pixel_hash: str


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", crc)))


def encode_png(image: Image.Image | np.ndarray, level: int = 1) -> bytes:
    """Encode an 8-bit `L` or `RGB` image (or its `uint8` pixels, `(h, w)` or `(h, w, 3)`) as PNG, three to six
    times faster than Pillow's encoder.

    Every row uses the PNG "Up" filter (the difference with the row above, computed in one numpy operation)
    and zlib's run-length strategy: on radiographs this is as small as Pillow's adaptive filtering at level 1,
    which spends most of its time choosing a filter per row. Any PNG reader decodes it losslessly.
    """
    if isinstance(image, Image.Image) and image.mode not in ("L", "RGB"):
        raise ValueError(f"encode_png takes L or RGB images, got {image.mode}")
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise ValueError(f"encode_png takes uint8 pixels of shape (h, w) or (h, w, 3), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(height, width * channels)
    raw = np.empty((height, width * channels + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type "Up"
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = compressor.compress(raw) + compressor.flush()
    color_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join(
        (b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header), _png_chunk(b"IDAT", data), _png_chunk(b"IEND", b""))
    )


def _is_gray(image: Image.Image) -> bool:
    red, green, blue = image.split()
    return red.tobytes() == green.tobytes() == blue.tobytes()


def _classify(error: Exception) -> str:
    text = str(error).lower()
    if "truncat" in text or "broken data stream" in text or "premature end" in text:
        return "truncated_image"
    return "unreadable_image"


def prepare_image(
    source: str | Path | bytes,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    png_compress_level: int = 1,
    jpeg_quality: int = 95,
) -> PreparedImage:
    """Decode and prepare one image.

    Args:
        source (`str`, `Path` or `bytes`): a path to a JPEG/PNG/DICOM file, or a file's bytes.
        max_side (`int`, *optional*): scale the longer side down to this many pixels (never up).
        max_pixels (`int`, *optional*): images with more pixels are refused as decompression bombs.
        png_compress_level (`int`, *optional*, defaults to `1`): zlib level for re-encoded PNGs (fast; lossless).
        jpeg_quality (`int`, *optional*, defaults to `95`): quality for re-encoded JPEGs.

    Returns:
        `PreparedImage`: encoded bytes, size, mode and `pixel_hash`, the hash of the stored pixels (see
        `pixel_hash`), which identifies exact duplicates whatever their file format.

    Raises:
        `ImageSkip`: with reason `missing_image`, `unreadable_image`, `truncated_image` or `oversized_image`.
    """
    if isinstance(source, bytes):
        data, name = source, "<bytes>"
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageSkip("missing_image", f"{name}: no such file") from None
        except OSError as error:
            raise ImageSkip("unreadable_image", f"{name}: {error}") from None
    if not data:
        raise ImageSkip("truncated_image", f"{name}: empty file")
    is_dicom = (len(data) >= 132 and data[128:132] == b"DICM") or name.lower().endswith((".dcm", ".dicom"))
    original_format = None
    file_size = None
    try:
        if is_dicom:
            # Rows × Columns × frames are checked from the header before the pixels are decoded (or inflated).
            image = load_image(data, mode=None, max_pixels=max_pixels)
        else:
            image = Image.open(io.BytesIO(data))
            original_format = image.format
            if image.width * image.height > max_pixels:
                raise ImageSkip("oversized_image", f"{name}: {image.width}x{image.height} pixels > {max_pixels}")
            file_size = image.size
            if max_side and image.format == "JPEG" and max(image.size) > 2 * max_side:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: much faster, and still larger than max_side.
                image.draft(image.mode, (max_side, max_side))
            image.load()
    except ImageSkip:
        raise
    except ImageTooLargeError as error:
        raise ImageSkip("oversized_image", f"{name}: {str(error).removeprefix('<bytes>: ')}") from None
    except Image.DecompressionBombError as error:
        raise ImageSkip("oversized_image", f"{name}: {error}") from None
    except (ImageLoadError, OSError, SyntaxError, ValueError) as error:
        raise ImageSkip(_classify(error), f"{name}: {type(error).__name__}: {error}") from None
    except Exception as error:  # pydicom and the decoder plugins raise assorted types on corrupt files
        raise ImageSkip("unreadable_image", f"{name}: {type(error).__name__}: {error}") from None
    if image.width * image.height > max_pixels:
        raise ImageSkip("oversized_image", f"{name}: {image.width}x{image.height} pixels > {max_pixels}")

    mode = "L" if image.mode in _GRAY_MODES else "RGB"
    source_mode = image.mode
    image = load_image(image, mode=mode)
    if source_mode not in ("RGB", "YCbCr") and mode == "RGB" and _is_gray(image):
        # NIH ships a few gray radiographs as RGBA; palette PNGs are often gray too.
        image, mode = image.convert("L"), "L"
    resized = False
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        resized = True
    # Hashing the pixels stored (after any resize) costs a quarter as much at half size, and two images equal at
    # full size are equal after the same resize.
    # `np.asarray(image)` would go through Pillow's array interface, several times slower than one `tobytes`.
    shape = (image.height, image.width) if mode == "L" else (image.height, image.width, 3)
    pixels = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(shape)
    digest = pixel_hash(pixels, image.mode)
    unchanged = not resized and image.size == file_size and source_mode == mode
    if unchanged and original_format in _KEEP_FORMATS:
        return PreparedImage(data, image.width, image.height, mode, digest)
    if original_format == "JPEG":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=jpeg_quality)
        return PreparedImage(buffer.getvalue(), image.width, image.height, mode, digest)
    return PreparedImage(encode_png(pixels, png_compress_level), image.width, image.height, mode, digest)


def pixel_hash(pixels: np.ndarray, mode: str) -> str:
    """The 128-bit XXH3 hash (hex) of an image's mode, size and pixels: equal for equal images, whatever their file.

    The build drops a record as an exact duplicate when this hash (with the reader's `dedupe_on` fields) equals an
    earlier record's. XXH3 is not cryptographic, but two different images collide by chance with probability
    about n**2 / 2**129 for n images (nil for any real dataset); it only needs to tell the build's own images
    apart, not to resist images crafted to collide, and it runs several times faster than SHA-256 (8x on a CPU with
    SHA instructions).
    """
    height, width = pixels.shape[:2]
    digest = xxhash.xxh3_128(f"{mode}:{width}x{height}:".encode())
    digest.update(np.ascontiguousarray(pixels))
    return digest.hexdigest()
