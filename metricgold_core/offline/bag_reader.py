"""rosbag2 input (sqlite3 or MCAP) via `rosbags`: topic choice, camera_info pairing, decoding.

Message classes come from the `rosbags` typestore (Image, CompressedImage and CameraInfo are the
same in humble and jazzy). Decoding is the node's own (metricgold_core.ros_format), which needs
no ROS installed.
"""
from __future__ import annotations

import bisect
from collections import deque, OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np

from .sources import Frame, frame_name
from ..ros_format import stamp_ns
from ..ros_format.camera_info import camera_model_from_info, check_camera_size
from ..ros_format.images import compressed_to_rgb8, image_to_rgb8

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
DISTROS = ('humble', 'jazzy')
# A frame waits this long (bag record time) for the sparse depth image with its own stamp
# before it is paired with the newest one (the node's sparse_depth_wait_ms).
SPARSE_WAIT_NS = 500_000_000
SPARSE_KEPT = 32    # sparse images kept by stamp while pairing


def typestore_for(distro: str):
    """The `rosbags` typestore of a ROS 2 distribution ('humble' or 'jazzy')."""
    from rosbags.typesys import get_typestore, Stores

    stores = {'humble': Stores.ROS2_HUMBLE, 'jazzy': Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f'`--ros-distro` must be one of {DISTROS}, got {distro!r}.')
    return get_typestore(stores[distro])


def bag_storage(path: Path) -> str:
    """'mcap' or 'sqlite3': the storage format of a bag folder or file."""
    if path.is_file():
        return 'mcap' if path.suffix.lower() == '.mcap' else 'sqlite3'
    return 'mcap' if any(path.glob('*.mcap')) else 'sqlite3'


def image_namespace(image_topic: str) -> str:
    """'/cam/color/image_raw' and '/cam/color/image_raw/compressed' -> '/cam/color'."""
    topic = image_topic.rstrip('/')
    if topic.endswith('/compressed'):
        topic = topic[:-len('/compressed')]
    return topic.rsplit('/', 1)[0]


def choose_topics(connections, image_topic: str | None, info_topic: str | None):
    """(image topic, its msgtype, camera_info topic or None) among the bag's connections."""
    types = {c.topic: c.msgtype for c in connections}
    listing = ', '.join(f'{t} ({m})' for t, m in sorted(types.items())) or 'no topics'
    if image_topic is not None:
        if types.get(image_topic) not in (IMAGE, COMPRESSED):
            raise ValueError(f'--image-topic {image_topic} is not an Image or CompressedImage '
                             f'topic in this bag; it has {listing}.')
    else:
        # Depth images are images too; never feed them to a depth model by accident.
        candidates = [t for t, m in types.items() if m in (IMAGE, COMPRESSED)
                      and 'depth' not in t.split('/')]
        raw = [t for t in candidates if types[t] == IMAGE]
        picks = raw if raw else candidates
        if len(picks) != 1:
            what = 'no colour image topic' if not picks else \
                f'several image topics ({", ".join(sorted(picks))})'
            raise ValueError(f'the bag has {what}; choose one with --image-topic. It has '
                             f'{listing}.')
        image_topic = picks[0]
    if info_topic is not None:
        if types.get(info_topic) != CAMERA_INFO:
            raise ValueError(f'--camera-info-topic {info_topic} is not a CameraInfo topic in '
                             f'this bag; it has {listing}.')
    else:
        infos = sorted(t for t, m in types.items() if m == CAMERA_INFO)
        beside = image_namespace(image_topic) + '/camera_info'
        if beside in infos:
            info_topic = beside
        elif len(infos) == 1:
            info_topic = infos[0]
        elif infos:
            raise ValueError(f'the bag has several camera_info topics ({", ".join(infos)}) and '
                             f'none is {beside}; choose one with --camera-info-topic.')
    return image_topic, types[image_topic], info_topic


class BagInput:
    """Frames of one image topic of a bag, each paired with its camera_info."""

    def __init__(self, path: Path, typestore, image_topic: str | None = None,
                 info_topic: str | None = None, sparse_topic: str | None = None,
                 odometry_topic: str | None = None):
        from rosbags.rosbag2 import Reader

        self.path = path
        self.typestore = typestore
        self.storage = bag_storage(path)
        self.reader = Reader(path)
        self.reader.open()
        try:
            self.image_topic, self.image_type, self.info_topic = choose_topics(
                self.reader.connections, image_topic, info_topic)
            self._image_conns = [c for c in self.reader.connections
                                 if c.topic == self.image_topic]
            self.total = sum(c.msgcount for c in self._image_conns)
            self.sparse_topic = sparse_topic
            self._sparse_conns = []
            if sparse_topic is not None:
                self._sparse_conns = [c for c in self.reader.connections
                                      if c.topic == sparse_topic]
                if not self._sparse_conns or self._sparse_conns[0].msgtype != IMAGE:
                    listing = ', '.join(sorted(f'{c.topic} ({c.msgtype})'
                                               for c in self.reader.connections))
                    raise ValueError(f'--sparse-depth-topic {sparse_topic} is not an Image '
                                     f'topic in this bag; it has {listing}.')
            self.sparse_counts = {'received': 0, 'bad': 0, 'exact': 0, 'newest': 0, 'none': 0}
            self._infos = self._read_infos()
            self.odometry, self.odometry_counts = None, {}
            if odometry_topic is not None:
                self.odometry = self._read_odometry(odometry_topic)
        except BaseException:
            self.reader.close()
            raise

    def _read_infos(self) -> tuple[list, list]:
        """All camera_info messages by header stamp (they are small), sorted."""
        if self.info_topic is None:
            return [], []
        conns = [c for c in self.reader.connections if c.topic == self.info_topic]
        by_stamp = {}
        for conn, _, raw in self.reader.messages(connections=conns):
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception:   # a corrupt camera_info is just not used for pairing
                continue
            by_stamp[stamp_ns(msg.header)] = msg
        stamps = sorted(by_stamp)
        return stamps, [by_stamp[s] for s in stamps]

    def _read_odometry(self, topic: str):
        """All nav_msgs/Odometry poses of `topic` (small), by stamp: a poses.PoseBuffer."""
        from ..camera.poses import pose_matrix, PoseBuffer

        conns = [c for c in self.reader.connections if c.topic == topic]
        if not conns or conns[0].msgtype != 'nav_msgs/msg/Odometry':
            listing = ', '.join(sorted(f'{c.topic} ({c.msgtype})'
                                       for c in self.reader.connections))
            raise ValueError(f'--odometry-topic {topic} is not a nav_msgs/Odometry topic in '
                             f'this bag; it has {listing}.')
        poses, bad = {}, 0
        for conn, _, raw in self.reader.messages(connections=conns):
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                poses[stamp_ns(msg.header)] = pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
            except Exception:   # corrupt or non-finite: not used (counted)
                bad += 1
        buffer = PoseBuffer(size=len(poses) + 1)
        refused = sum(1 for t in sorted(poses) if buffer.add(t, poses[t]))
        self.odometry_counts = {'messages': len(poses) + bad, 'refused': bad + refused}
        return buffer

    def info_for(self, stamp: int):
        """camera_info with exactly this stamp, else the latest before it, else the first."""
        stamps, msgs = self._infos
        if not stamps:
            return None
        i = bisect.bisect_right(stamps, stamp) - 1
        return msgs[max(i, 0)]

    def frames(self) -> Iterator[Frame]:
        if not self._sparse_conns:
            for index, message in enumerate(self.reader.messages(connections=self._image_conns)):
                yield self._image_frame(index, *message)
            return
        yield from self._frames_with_sparse()

    def _frames_with_sparse(self) -> Iterator[Frame]:
        """Frames paired with the sparse image of the same stamp, waiting SPARSE_WAIT_NS of
        record time for it (then the newest one), in one pass with bounded memory."""
        sparse = OrderedDict()   # stamp -> float32 metres, the newest SPARSE_KEPT
        pending = deque()        # frames read, not yet paired
        image_topic = self.image_topic

        def ready(frame, now_ns):
            return frame.error is not None or frame.stamp_ns in sparse or \
                now_ns - frame.log_time_ns > SPARSE_WAIT_NS

        def paired(frame):
            if frame.error is None:
                exact = sparse.get(frame.stamp_ns)
                frame.sparse_m = exact if exact is not None else \
                    next(reversed(sparse.values()), None)
                key = 'exact' if exact is not None else \
                    'newest' if frame.sparse_m is not None else 'none'
                self.sparse_counts[key] += 1
            return frame

        index = 0
        for conn, log_time_ns, raw in self.reader.messages(
                connections=self._image_conns + self._sparse_conns):
            if conn.topic == image_topic:
                pending.append(self._image_frame(index, conn, log_time_ns, raw))
                index += 1
            else:
                self._add_sparse(sparse, conn, raw)
            while pending and ready(pending[0], log_time_ns):
                yield paired(pending.popleft())
        while pending:
            yield paired(pending.popleft())

    def _add_sparse(self, sparse: OrderedDict, conn, raw) -> None:
        from ..ros_format.images import sparse_depth_to_metres

        try:
            msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            metres = sparse_depth_to_metres(msg)
        except Exception:   # a corrupt or wrongly encoded sparse image is not used (counted)
            self.sparse_counts['bad'] += 1
            return
        self.sparse_counts['received'] += 1
        sparse[stamp_ns(msg.header)] = metres
        while len(sparse) > SPARSE_KEPT:
            sparse.popitem(last=False)

    def _image_frame(self, index: int, conn, log_time_ns: int, raw) -> Frame:
        """One image message of the bag -> Frame (with `error` set when it cannot be used)."""
        name = frame_name(index)
        try:
            msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:   # rosbags raises assorted errors for corrupt CDR
            return Frame(index, name, error=f'{self.image_topic} message {index}: cannot '
                         f'deserialize ({type(exc).__name__}: {exc})', log_time_ns=log_time_ns)
        stamp = stamp_ns(msg.header)
        frame = Frame(index, name, stamp_ns=stamp, header=msg.header, log_time_ns=log_time_ns)
        try:
            rgb = image_to_rgb8(msg) if conn.msgtype == IMAGE else compressed_to_rgb8(msg)
            frame.rgb = np.array(rgb, order='C')   # writable: message buffers may not be
            frame.camera_info = self.info_for(stamp)
            if frame.camera_info is not None:
                frame.camera = camera_model_from_info(frame.camera_info)
                check_camera_size(frame.camera, *frame.rgb.shape[:2])
        except ValueError as exc:   # BadInput included
            frame.rgb, frame.error = None, f'{self.image_topic} message {index}: {exc}'
        return frame

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
