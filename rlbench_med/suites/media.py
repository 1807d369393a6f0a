"""Readers of the media a record points to: images, masks, videos and multi-lead signals.

Every reader raises ``ValueError`` / ``OSError`` (see :data:`IMAGE_ERRORS`, :data:`SIGNAL_ERRORS`,
:data:`VIDEO_ERRORS`) for a file it cannot use, with a one-line message; validation turns those
into ``file:line: field: message`` problems.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rlbench_med.suites.release_format import frame_indices

IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# What torch.load / np.load / wfdb raise on unreadable or malformed files.
SIGNAL_ERRORS = (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError)
VIDEO_ERRORS = (OSError, ValueError)


class MediaError(ValueError):
    """A media file that cannot be used (a video frame that does not decode, say); the message names the file."""


def _rgb_array(rgb: Image.Image, size: int) -> np.ndarray:
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_image(path: Path | str, size: int = 64) -> np.ndarray:
    """Any PNG/JPEG as float32 ``[3, size, size]`` in ``[0, 1]`` (RGB, bilinear resize)."""
    with Image.open(path) as im:
        return _rgb_array(im.convert("RGB"), size)


def load_mask(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as bool ``[H, W]`` (foreground: value > 0; colour masks are read as grey).

    With ``size = (W, H)`` a mask of another size is resized to it with nearest-neighbour
    sampling first (as the release does, DS L618-654, without its width/height swap), so the
    mask lies on the image's pixel grid.
    """
    with Image.open(path) as im:
        grey = im.convert("L")
        if size is not None and grey.size != tuple(size):
            grey = grey.resize(tuple(size), Image.NEAREST)
        return np.asarray(grey) > 0


# --------------------------------------------------------------------------------------------
# videos
# --------------------------------------------------------------------------------------------
def _cv2() -> Any:
    """OpenCV, which decodes videos: the ``video`` extra (a clear error when it is missing)."""
    try:
        import cv2
    except ImportError:
        raise MediaError("reading videos needs OpenCV: pip install 'rlbench-med[video]' "
                         "(opencv-python-headless)") from None
    return cv2


def _open_video(path: Path | str):  # -> cv2.VideoCapture
    cv2 = _cv2()

    if not Path(path).is_file():
        raise MediaError(f"{path}: file does not exist")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise MediaError(f"{path}: cannot be opened as a video")
    return capture


def _read_frame(capture: Any, path: Path | str, index: int, total: int) -> np.ndarray:
    """Frame ``index`` (BGR), read as :func:`read_video_frames` reads it: a seek, then a decode."""
    cv2 = _cv2()

    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    if not ok or frame is None:
        raise MediaError(f"{path}: frame {index} of {total} does not decode")
    return frame


def video_info(path: Path | str) -> tuple[int, tuple[int, int]]:
    """``(frame count, (W, H))`` of a video as its container reports them. Its first, middle and last
    frames must decode as the run reads them: every sampling of the release's includes the first and
    last frame (one frame: the middle one), and a header that reads says nothing of the frames."""
    cv2 = _cv2()

    capture = _open_video(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise MediaError(f"{path}: no decodable frame (the container reports {total} frames)")
        frames = [_read_frame(capture, path, index, total) for index in sorted({0, total // 2, total - 1})]
        return total, (int(frames[0].shape[1]), int(frames[0].shape[0]))
    finally:
        capture.release()


def read_video_frames(path: Path | str, n: int) -> list[Image.Image]:
    """``n`` frames sampled evenly (:func:`frame_indices`) as RGB images of the video's own size.

    Frames are decoded with OpenCV (BGR, converted to RGB) at the indices the release samples
    from the reported frame count.
    """
    cv2 = _cv2()

    capture = _open_video(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        indices = frame_indices(total, n)
        if not indices:
            raise MediaError(f"{path}: the container reports {total} frames")
        return [Image.fromarray(cv2.cvtColor(_read_frame(capture, path, index, total), cv2.COLOR_BGR2RGB))
                for index in indices]
    finally:
        capture.release()


def load_video_frames(path: Path | str, n: int, size: int = 64) -> np.ndarray:
    """``n`` frames sampled evenly (:func:`read_video_frames`) as float32 ``[n, 3, size, size]`` in [0, 1],
    resized like :func:`load_image`."""
    return np.stack([_rgb_array(frame, size) for frame in read_video_frames(path, n)])


# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------
def _wfdb_base(path: Path) -> str | None:
    text = str(path)
    for suffix in (".hea", ".dat", ".mat"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    if Path(text + ".hea").is_file():
        return text
    return None


def signal_exists(path: Path) -> bool:
    """Whether ``path`` names a readable signal file (for WFDB: its header exists)."""
    base = _wfdb_base(path)
    if base is not None:
        return Path(base + ".hea").is_file()
    return path.is_file()


def signal_files(path: Path) -> list[Path]:
    """The files a signal path reads: the file itself, or a WFDB record's header and data files."""
    base = _wfdb_base(path)
    if base is None:
        return [path]
    return [p for p in (Path(base + s) for s in (".hea", ".dat", ".mat")) if p.exists()]


def load_signal(path: Path | str) -> np.ndarray:
    """A multi-lead signal as float32 ``[leads, samples]``.

    ``.pt``: a 2-D tensor ``[leads, samples]`` (``torch.load(weights_only=True)``: a file holding
    other pickled Python objects is refused); ``.npy``: a 2-D array of the same shape; otherwise a
    WFDB record (``name``, ``name.hea`` or ``name.dat``) read with ``wfdb.rdrecord``, whose
    ``p_signal [samples, leads]`` is transposed. Raises ``ValueError`` with a one-line message for
    a file that is not a 2-D signal.
    """
    path = Path(path)
    if path.suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(
                "holds pickled Python objects, not a plain tensor (refused: loading them could run code); "
                "save the signal with torch.save(tensor)"
            ) from None
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"expected a tensor [leads, samples], got {type(obj).__name__}")
        arr = obj.detach().to(torch.float32).numpy()
    elif path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        base = _wfdb_base(path)
        if base is None:
            raise ValueError(f"not a .pt tensor, .npy array or WFDB record (no {path.name}.hea)")
        import wfdb

        record = wfdb.rdrecord(base)
        if record.p_signal is None:
            raise ValueError("WFDB record has no physical signal")
        arr = np.asarray(record.p_signal, dtype=np.float32).T
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D signal [leads, samples], got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def signal_problem(path: Path) -> str | None:
    """Why a signal file cannot be used (one line), or None when it is a finite ``[leads, samples]`` array."""
    if not signal_exists(path):
        return "file does not exist"
    try:
        arr = load_signal(path)
    except SIGNAL_ERRORS as exc:
        return f"cannot be read as a signal: {first_line(exc)}"
    if arr.size == 0:
        return f"signal is empty (shape {tuple(arr.shape)}: no samples)"
    if arr.shape[0] > arr.shape[1]:
        return f"shape {tuple(arr.shape)} looks like [samples, leads]; expected [leads, samples]"
    if not np.isfinite(arr).all():
        return "signal contains NaN or infinite values"
    return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
