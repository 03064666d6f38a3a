"""File input and output shared by the commands: atomic writes and image files.

Every file mrflow writes goes through :func:`atomic_write`: the content is written to a temporary
file in the destination directory and then renamed into place, so a reader (or an interrupted run)
never sees a half-written file, and an existing file is replaced only when asked.

Images on disk are PNG, JPEG or WebP. In memory they are ``(C, H, W)`` float32 tensors in [0, 1]
with ``C = 3`` (RGB) or ``C = 4`` (RGBA, straight alpha).
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from mrflow.images import to_uint8

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "ImageFileError", "atomic_write", "load_image", "probe_image", "save_image"]

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


class ImageFileError(ValueError):
    """An image file cannot be read or written as asked; the message names the file."""


def atomic_write(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write a file atomically: ``write(tmp)`` fills a temporary sibling that is then renamed to ``path``.

    Args:
        path: the destination; its directory must exist.
        write: writes the whole content to the temporary path it is given.
        overwrite: replace an existing ``path``; if false, an existing file is never touched.

    Returns:
        ``path``.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise _exists(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())  # temporary files are created private (0600)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_without_replacing(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _link_without_replacing(tmp: Path, path: Path) -> None:
    """Publish ``tmp`` as ``path`` only if ``path`` does not exist (a hard link fails if it does)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if path.exists():  # no hard links on this filesystem: check, then rename
            raise _exists(path) from None
        os.replace(tmp, path)


def _exists(path: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "file exists (pass overwrite to replace it)", str(path))


def image_format(path: str | Path) -> str:
    """The PIL format name for a path's suffix; raises :class:`ImageFileError` for other suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        expected = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ImageFileError(f"{path}: unsupported image type {suffix!r}, expected one of {expected}")
    return IMAGE_SUFFIXES[suffix]


def probe_image(path: str | Path) -> tuple[int, int]:
    """Check by its header, without decoding, that ``path`` is an image; returns ``(width, height)``."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageFileError(f"cannot read image {path}: {exc}") from exc


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file, applying its EXIF orientation.

    Returns:
        ``(3, H, W)`` (no transparency) or ``(4, H, W)`` (RGBA) float32 in [0, 1]; 16-bit images keep
        16-bit greyscale keeps its precision.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ImageFileError: if the file is not a readable image.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            array = _to_float_array(image)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageFileError(f"cannot read image {path}: {exc}") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_float_array(image: Image.Image) -> np.ndarray:
    """A PIL image in any mode → ``(H, W, 3 or 4)`` float32 in [0, 1]."""
    if image.mode.startswith("I"):  # 16-bit greyscale
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    converted = image.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(converted, dtype=np.float32) / 255.0


def save_image(
    path: str | Path,
    image: torch.Tensor | Image.Image,
    *,
    overwrite: bool = False,
    pnginfo: dict[str, str] | None = None,
    quality: int = 95,
) -> Path:
    """Write an image atomically as PNG, JPEG or WebP (chosen by the suffix).

    Args:
        path: destination; ``.png``, ``.jpg``/``.jpeg`` or ``.webp``.
        image: ``(3 or 4, H, W)`` float in [0, 1] (rounded to 8 bits), or a PIL image.
        overwrite: replace an existing file; otherwise an existing file raises ``FileExistsError``.
        pnginfo: text chunks stored in a PNG (ignored by the other formats).
        quality: JPEG/WebP quality, 1–100.

    Raises:
        ImageFileError: for an unsupported suffix, or alpha requested in a JPEG.
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    fmt = image_format(path)
    pil = image if isinstance(image, Image.Image) else _to_pil(image)
    if fmt == "JPEG" and pil.mode in ("RGBA", "LA", "PA"):
        raise ImageFileError(f"{path}: JPEG cannot store transparency; save as .png or .webp")
    options: dict[str, object] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG" and pnginfo:
        info = PngImagePlugin.PngInfo()
        for key, value in pnginfo.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    if fmt == "WEBP" and quality >= 100:
        options = {"lossless": True}
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt, **options), overwrite=overwrite)


def _to_pil(image: torch.Tensor) -> Image.Image:
    if image.ndim != 3 or image.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3 or 4, H, W) image tensor, got shape {tuple(image.shape)}")
    return Image.fromarray(to_uint8(image[None])[0])  # (H, W, 3) → RGB, (H, W, 4) → RGBA
