"""Publishing Image and PointCloud2 through rcl's C API, straight from the node's buffers.

rclpy's `publish()` first converts the Python message into a new C message: it allocates a
zeroed data sequence as large as the payload and copies the payload into it, all while holding
the GIL, and keeps holding it while rcl serialises and hands the message to the middleware.
Measured on the 4.9 MB cloud with a second Python thread (scripts/bench_node.py overhead): it
could not run for 61-89 % of an rclpy publish, 2-30 % of an rcl_publish. In the node that
thread is the inference worker, which needs the GIL to dispatch each torch operation.

A message whose data is not an `array.array` (built elsewhere) goes through rclpy's
`publish()`.

`RclPublisher` skips the conversion. It keeps one C message per publisher (ctypes structures
of the rosidl C layout) whose header, scalars and strings are filled from the Python message
and whose data sequence points at the Python message's own buffer (the node's ByteBuffer),
then calls `rcl_publish` through ctypes, which releases the GIL for the call. rcl serialises
the message before `rcl_publish` returns, the same promise ByteBuffer's reuse relies on.

The layout is checked once per message type against rosidl's own conversion (the message
class's `_CONVERT_FROM_PY`): a message with distinct values in every field is converted by
rosidl and read back through these structures. Any difference, or a missing library or
attribute, makes `rcl_publisher` return None and the caller keeps rclpy's `publish()`.
"""
from __future__ import annotations

import array
import ctypes
import threading

from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header


class RosString(ctypes.Structure):          # rosidl_runtime_c__String
    _fields_ = [('data', ctypes.c_char_p), ('size', ctypes.c_size_t),
                ('capacity', ctypes.c_size_t)]


class ByteSequence(ctypes.Structure):       # rosidl_runtime_c__uint8__Sequence
    _fields_ = [('data', ctypes.c_void_p), ('size', ctypes.c_size_t),
                ('capacity', ctypes.c_size_t)]


class CTime(ctypes.Structure):              # builtin_interfaces__msg__Time
    _fields_ = [('sec', ctypes.c_int32), ('nanosec', ctypes.c_uint32)]


class CHeader(ctypes.Structure):            # std_msgs__msg__Header
    _fields_ = [('stamp', CTime), ('frame_id', RosString)]


class CPointField(ctypes.Structure):        # sensor_msgs__msg__PointField
    _fields_ = [('name', RosString), ('offset', ctypes.c_uint32),
                ('datatype', ctypes.c_uint8), ('count', ctypes.c_uint32)]


class CPointFieldSequence(ctypes.Structure):
    _fields_ = [('data', ctypes.POINTER(CPointField)), ('size', ctypes.c_size_t),
                ('capacity', ctypes.c_size_t)]


class CImage(ctypes.Structure):             # sensor_msgs__msg__Image
    _fields_ = [('header', CHeader), ('height', ctypes.c_uint32),
                ('width', ctypes.c_uint32), ('encoding', RosString),
                ('is_bigendian', ctypes.c_uint8), ('step', ctypes.c_uint32),
                ('data', ByteSequence)]


class CPointCloud2(ctypes.Structure):       # sensor_msgs__msg__PointCloud2
    _fields_ = [('header', CHeader), ('height', ctypes.c_uint32),
                ('width', ctypes.c_uint32), ('fields', CPointFieldSequence),
                ('is_bigendian', ctypes.c_bool), ('point_step', ctypes.c_uint32),
                ('row_step', ctypes.c_uint32), ('data', ByteSequence),
                ('is_dense', ctypes.c_bool)]


def _set_string(target: RosString, text: str) -> None:
    # ctypes keeps the bytes object (the C string) alive in the structure until replaced
    raw = text.encode()
    target.data, target.size, target.capacity = raw, len(raw), len(raw) + 1


def _string(value: RosString) -> str:
    return ctypes.string_at(value.data, value.size).decode() if value.size else ''


def _buffer_address(data) -> tuple[int, int]:
    """(address, length) of a message's data field without a copy."""
    if isinstance(data, array.array) and data.itemsize == 1:
        address, length = data.buffer_info()
        return address, length
    raise TypeError(f'expected the data as array.array of bytes, got {type(data).__name__}')


class _Filler:
    """Fills one C structure from a Python message of its type. The data sequence points at
    the message's buffer, so the message must outlive the use of the structure (one publish
    call)."""

    def __init__(self, cls):
        self.cls = cls
        self.c_msg = (CImage if cls is Image else CPointCloud2)()
        self._fields_key = None
        self._fields_array = None

    def fill(self, msg) -> ctypes.Structure:
        c = self.c_msg
        c.header.stamp.sec = msg.header.stamp.sec
        c.header.stamp.nanosec = msg.header.stamp.nanosec
        _set_string(c.header.frame_id, msg.header.frame_id)
        c.height, c.width = msg.height, msg.width
        c.is_bigendian = msg.is_bigendian
        if self.cls is Image:
            _set_string(c.encoding, msg.encoding)
            c.step = msg.step
        else:
            self._fill_fields(msg.fields)
            c.point_step, c.row_step, c.is_dense = msg.point_step, msg.row_step, msg.is_dense
        address, length = _buffer_address(msg.data)
        c.data.data, c.data.size, c.data.capacity = address, length, length
        return c

    def _fill_fields(self, fields) -> None:
        key = tuple((f.name, f.offset, f.datatype, f.count) for f in fields)
        if key != self._fields_key:   # the field table changes only with the cloud's layout
            table = (CPointField * max(len(key), 1))()
            for item, (name, offset, datatype, count) in zip(table, key):
                _set_string(item.name, name)
                item.offset, item.datatype, item.count = offset, datatype, count
            self._fields_array, self._fields_key = table, key
        seq = self.c_msg.fields
        seq.data = ctypes.cast(self._fields_array, ctypes.POINTER(CPointField))
        seq.size = seq.capacity = len(key)


# ------------------------------------------------------------------------- the layout check

def _capsule_function(capsule, restype, *argtypes, python_api: bool = False):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get(capsule, None)
    if not address:
        raise RuntimeError('empty capsule')
    factory = ctypes.PYFUNCTYPE if python_api else ctypes.CFUNCTYPE
    return factory(restype, *argtypes)(address)


def _sample(cls):
    """A small message of `cls` with a distinct value in every field."""
    header = Header(frame_id='layout_check_frame')
    header.stamp.sec, header.stamp.nanosec = 123456789, 987654321
    data = array.array('B', bytes(range(7, 247)))   # 240 bytes
    if cls is Image:
        return Image(header=header, height=3, width=5, encoding='32FC1', is_bigendian=1,
                     step=80, data=data)
    fields = [PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name='intensity', offset=12, datatype=PointField.UINT16, count=3)]
    return PointCloud2(header=header, height=3, width=5, fields=fields, is_bigendian=True,
                       point_step=16, row_step=80, data=data, is_dense=True)


def _read(cls, c) -> dict:
    """The fields a C message holds, as plain values."""
    out = {'sec': c.header.stamp.sec, 'nanosec': c.header.stamp.nanosec,
           'frame_id': _string(c.header.frame_id), 'height': c.height, 'width': c.width,
           'is_bigendian': int(c.is_bigendian),
           'data': ctypes.string_at(c.data.data, c.data.size) if c.data.size else b''}
    if cls is Image:
        out.update(encoding=_string(c.encoding), step=c.step)
    else:
        out.update(point_step=c.point_step, row_step=c.row_step, is_dense=bool(c.is_dense),
                   fields=[(_string(f.name), f.offset, f.datatype, f.count)
                           for f in c.fields.data[:c.fields.size]])
    return out


def layout_matches(cls) -> bool:
    """Whether rosidl's C conversion of a sample `cls` message reads back identically through
    this module's structures, and this module's own fill does too."""
    cls.__import_type_support__()   # sets the conversion capsules (rclpy does it too)
    create = _capsule_function(cls._CREATE_ROS_MESSAGE, ctypes.c_void_p)
    destroy = _capsule_function(cls._DESTROY_ROS_MESSAGE, None, ctypes.c_void_p)
    convert = _capsule_function(cls._CONVERT_FROM_PY, ctypes.c_bool, ctypes.py_object,
                                ctypes.c_void_p, python_api=True)
    sample = _sample(cls)
    filler = _Filler(cls)
    pointer = create()
    if not pointer:
        return False
    try:
        if not convert(sample, pointer):
            return False
        by_rosidl = _read(cls, ctypes.cast(pointer, ctypes.POINTER(type(filler.c_msg))).contents)
    finally:
        destroy(pointer)
    by_us = _read(cls, filler.fill(sample))
    return by_rosidl == by_us


_CHECKED: dict = {}
_CHECK_LOCK = threading.Lock()


def _checked(cls) -> bool:
    with _CHECK_LOCK:
        if cls not in _CHECKED:
            _CHECKED[cls] = layout_matches(cls)
        return _CHECKED[cls]


# ------------------------------------------------------------------------- the publisher

class RclPublishError(RuntimeError):
    pass


class ErrorString(ctypes.Structure):        # rcutils_error_string_t, returned by value
    _fields_ = [('str', ctypes.c_char * 1024)]   # RCUTILS_ERROR_MESSAGE_MAX_LENGTH


def _rcl():
    """librcl and librcutils as the process already loaded them (rclpy links both)."""
    rcl = ctypes.CDLL('librcl.so')
    rcutils = ctypes.CDLL('librcutils.so')
    rcl.rcl_publish.restype = ctypes.c_int32
    rcl.rcl_publish.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    rcutils.rcutils_get_error_string.restype = ErrorString
    rcutils.rcutils_reset_error.restype = None
    return rcl, rcutils


class RclPublisher:
    """`publish(msg)` for one rclpy publisher of Image or PointCloud2 whose messages carry
    their data as `array.array('B')`: rcl_publish from the message's own buffer, GIL released.
    One thread at a time (the node's publish thread)."""

    def __init__(self, publisher, libraries):
        self._publisher = publisher
        self._filler = _Filler(publisher.msg_type)
        self._rcl, self._rcutils = libraries

    def publish(self, msg) -> None:
        if not isinstance(msg.data, array.array):   # built elsewhere: rclpy converts it
            self._publisher.publish(msg)
            return
        c_msg = self._filler.fill(msg)
        handle = self._publisher.handle
        with handle:   # rclpy's guard: the publisher is not destroyed during the call
            ret = self._rcl.rcl_publish(handle.pointer, ctypes.byref(c_msg), None)
        if ret != 0:
            text = self._rcutils.rcutils_get_error_string().str
            self._rcutils.rcutils_reset_error()
            raise RclPublishError(f'rcl_publish failed ({ret}): {text.decode(errors="replace")}')


def rcl_publisher(publisher) -> RclPublisher | None:
    """An RclPublisher for `publisher` (of Image or PointCloud2), or None for other types and
    where this ROS install does not allow it (the caller then uses `publisher.publish`)."""
    cls = getattr(publisher, 'msg_type', None)
    if cls not in (Image, PointCloud2):
        return None
    try:
        libraries = _rcl()
        if not _checked(cls):
            return None
        getattr(publisher.handle, 'pointer')
    except Exception:   # a probe: whatever fails here, rclpy's publish() stays
        return None
    return RclPublisher(publisher, libraries)
