"""Inputs of `metricgold process` as a stream of frames: image folders, videos, rosbag2 bags.

Every source numbers its frames in input order (corrupt ones included), so a frame keeps its
output name across runs and `--resume` can tell which frames are finished. A frame that cannot
be read is yielded with `error` set instead of raising: the caller reports it and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..camera.geometry import as_camera, CameraModel, intrinsics_from_hfov, make_K
from ..io_utils import read_rgb

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')
VIDEO_SUFFIXES = ('.mp4', '.mkv', '.avi', '.mov', '.webm', '.m4v', '.mpg', '.mpeg', '.ts')
BAG_SUFFIXES = ('.mcap', '.db3')


@dataclass
class Frame:
    index: int                      # position in the input; stable across runs
    name: str                       # stem of this frame's output files
    rgb: np.ndarray | None = None   # uint8 (H, W, 3); None when `error` is set
    error: str | None = None        # why the frame cannot be used
    stamp_ns: int | None = None     # header stamp (bags) or presentation time (videos)
    camera: object = None           # CameraModel of this image from camera_info; None: default
    camera_info: object = None      # rosbags CameraInfo the camera came from (bags only)
    header: object = None           # rosbags std_msgs/Header of the input image (bags only)
    log_time_ns: int | None = None  # bag record time of the input image (bags only)
    sparse_m: np.ndarray | None = None  # paired sparse metric depth (bags with a sparse topic)


def frame_name(index: int) -> str:
    """Output file stem of the index-th frame of a video or bag (folders keep their stems)."""
    return f'frame_{index:06d}'


def input_kind(path: Path) -> str:
    """'bag', 'folder' or 'video' for an input path; ValueError a user can act on otherwise."""
    if not path.exists():
        raise ValueError(f'INPUT {path} does not exist.')
    if path.is_dir():
        if (path / 'metadata.yaml').exists() or any(path.glob('*.mcap')) or \
                any(path.glob('*.db3')):
            return 'bag'
        return 'folder'
    suffix = path.suffix.lower()
    if suffix in BAG_SUFFIXES:
        return 'bag'
    if suffix in VIDEO_SUFFIXES:
        return 'video'
    raise ValueError(f'INPUT {path} is neither an image folder, a rosbag2 bag (a folder with '
                     f'metadata.yaml, or {", ".join(BAG_SUFFIXES)}) nor a video '
                     f'({", ".join(VIDEO_SUFFIXES)}).')


def folder_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name; names must give unique stems."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f'INPUT folder {folder} has no images ({", ".join(IMAGE_SUFFIXES)}).')
    check_unique_stems(files, f'INPUT folder {folder}')
    return files


def check_unique_stems(paths, where: str) -> None:
    """ValueError when two images share a stem: outputs are named by stem and would overwrite
    each other (a.png and a.jpg, or dir1/a.png and dir2/a.png)."""
    stems = [Path(p).stem for p in paths]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f'{where} has several images named {clashes[0]}.*: outputs are named '
                         'by stem, so rename or move one of them.')


def folder_frames(files: list[Path]) -> Iterator[Frame]:
    for index, path in enumerate(files):
        try:
            yield Frame(index, path.stem, rgb=read_rgb(path))
        except ValueError as exc:
            yield Frame(index, path.stem, error=str(exc))


def video_frame_count(path: Path) -> int | None:
    av = _import_av()
    with av.open(str(path)) as container:
        return container.streams.video[0].frames or None


def video_frames(path: Path) -> Iterator[Frame]:
    """Decoded frames of the first video stream; a packet that fails to decode is one error."""
    av = _import_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        index = 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                yield Frame(index, frame_name(index), error=f'{path}: cannot decode a '
                            f'packet of frame {index} ({exc})')
                index += 1
                continue
            for picture in decoded:
                stamp_ns = None if picture.time is None else int(round(picture.time * 1e9))
                yield Frame(index, frame_name(index), stamp_ns=stamp_ns,
                            rgb=picture.to_ndarray(format='rgb24'))
                index += 1


def _import_av():
    try:
        import av
    except ImportError as exc:
        raise ValueError('video input needs PyAV (its wheels bundle FFmpeg): '
                         "pip install av, or install this package with the 'process' extra."
                         ) from exc
    return av


def load_intrinsics(path: Path) -> dict:
    """An intrinsics JSON: fx, fy, cx, cy in pixels, optionally the width and height they are for.

    This is the format of intrinsics.json in the shared data folders. A negative focal length
    (ICL-NUIM writes fy < 0 for its y-up world) describes the same pinhole image: its magnitude
    is used.
    """
    from ..data.base import read_intrinsics_json
    try:
        values = read_intrinsics_json(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f'--intrinsics {exc} Expected fx, fy, cx, cy (pixels) and optionally '
                         'width, height.') from exc
    values['fx'], values['fy'] = abs(values['fx']), abs(values['fy'])
    if not (values['fx'] > 0 and values['fy'] > 0):
        raise ValueError(f'--intrinsics {path}: fx and fy must be > 0.')
    return values


class DefaultCamera:
    """The camera of frames without camera_info: an intrinsics JSON, else a horizontal FOV."""

    def __init__(self, intrinsics: dict | None, hfov_deg: float):
        self.intrinsics = intrinsics
        self.hfov_deg = hfov_deg

    def camera(self, height: int, width: int) -> CameraModel:
        """The CameraModel of a (height, width) image."""
        if self.intrinsics is None:
            return CameraModel.from_K(intrinsics_from_hfov(width, height, self.hfov_deg),
                                      height, width)
        i = self.intrinsics
        # Intrinsics given for another size describe the same camera, resized.
        h, w = i.get('hw', (height, width))
        return as_camera(CameraModel.from_K(make_K(i['fx'], i['fy'], i['cx'], i['cy']), h, w),
                         height, width)
