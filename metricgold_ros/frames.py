"""Hand-over between the ROS callbacks and the inference worker.

`Mailbox` holds one frame: a newer frame replaces an unprocessed one (counted as dropped, busy),
so the worker always starts on the newest image and latency never builds up in a queue.
`StampCache` pairs images with what arrived for the same stamp (camera_info, sparse depth) by
exact stamp, like an exact-time synchronizer, with a short bounded history.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import threading
import time

import numpy as np

from metricgold_core.camera.geometry import CameraModel


@dataclass
class ReceivedFrame:
    """One camera image as the callback hands it to the worker."""

    rgb: np.ndarray          # uint8 (H, W, 3) RGB, possibly a view of the message data
    header: object           # std_msgs/Header of the input image, copied to every output
    stamp_ns: int
    received_s: float        # time.monotonic() at arrival: latency and age are measured from it
    convert_ms: float        # time spent turning the message into `rgb`


class Mailbox:
    """A one-slot queue: put() replaces, take() waits."""

    def __init__(self):
        self._frame = None
        self._cond = threading.Condition()
        self._closed = False

    def put(self, frame: ReceivedFrame) -> bool:
        """Store `frame`; True when it replaced one the worker had not taken (a drop)."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float) -> ReceivedFrame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout_s)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(frozen=True)
class InfoEntry:
    info: object             # sensor_msgs/CameraInfo as received
    camera: CameraModel      # its pinhole model (validated)

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.camera.height, self.camera.width


@dataclass(frozen=True, eq=False)   # compared by identity: it holds an array
class SparseEntry:
    metres: np.ndarray       # a received sparse_depth image: float32 metres, NaN = none

    @property
    def size_hw(self) -> tuple[int, int]:
        return tuple(self.metres.shape[:2])


class StampCache:
    """The last `size` entries by stamp, with waiting for a given stamp; and the newest one of
    each image size (an entry's `size_hw`, (height, width)), for frames whose own entry is late
    or lost. Holds camera_info (InfoEntry) or sparse depth (SparseEntry)."""

    SIZES_KEPT = 8

    def __init__(self, size: int = 30):
        self.size = max(1, int(size))
        self._entries = OrderedDict()    # stamp_ns -> entry, oldest first
        self._by_size = OrderedDict()    # (height, width) -> newest entry, newest last
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, entry) -> None:
        with self._cond:
            self._entries[stamp_ns] = entry
            self._entries.move_to_end(stamp_ns)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            size = entry.size_hw
            self._by_size[size] = entry
            self._by_size.move_to_end(size)
            while len(self._by_size) > self.SIZES_KEPT:
                self._by_size.popitem(last=False)
            self._cond.notify_all()

    @property
    def latest(self):
        with self._cond:
            return self._newest()

    def _newest(self):
        return next(reversed(self._by_size.values()), None)

    def latest_for(self, height: int, width: int):
        """The newest entry for an image of this size, else the newest of any size.

        Intrinsics do not change with time, so a clock jump does not forget these.
        """
        with self._cond:
            return self._by_size.get((height, width)) or self._newest()

    def clear_history(self, after_ns: int) -> None:
        """After a clock jump back to `after_ns`: forget the stamps of the old timeline's future.

        Entries at or before `after_ns` stay: the camera_info of the very image that revealed
        the jump usually arrives just before it. The newest intrinsics are kept either way.
        """
        with self._cond:
            for stamp in [s for s in self._entries if s > after_ns]:
                del self._entries[stamp]

    def wait_for(self, stamp_ns: int, timeout_s: float):
        """The entry with exactly this stamp, waiting up to `timeout_s` for it to arrive."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                entry = self._entries.get(stamp_ns)
                remaining = deadline - time.monotonic()
                if entry is not None or remaining <= 0:
                    return entry
                self._cond.wait(remaining)
