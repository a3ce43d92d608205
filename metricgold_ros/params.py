"""The node's parameters: one table with defaults, descriptions, ranges and validation.

The table is plain data so tests (and the YAML check) can read it without starting ROS. It is
the one place a parameter is described: config/depth.yaml and the table of docs/NODE.md are
generated from it (`python -m metricgold_ros.param_docs`), and the texts of options the
`metricgold` commands share come from metricgold_core.model.run_options.DESCRIPTIONS.
"""
from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rcl_interfaces.msg import ParameterType

from metricgold_core.camera.geometry import DEFAULT_FALLBACK_HFOV_DEG
from metricgold_core.camera.rectify import RECTIFY_MODES
from metricgold_core.model.run_options import check_device, COMPILE_MODES, DESCRIPTIONS, DTYPES
from metricgold_core.model.run_options import MODES
from metricgold_core.scale import CORRECTIONS, GROUND_MAX_TILT_DEG, SOURCES

CHOICES = {
    'device': None,   # run_options.check_device: auto, cpu, cuda, cuda:N
    'dtype': DTYPES,
    'mode': MODES,
    'compile': COMPILE_MODES,
    'input_transport': ('raw', 'compressed'),
    'input_reliability': ('auto', 'reliable', 'best_effort'),
    'rectify': RECTIFY_MODES,
    'output_reliability': ('reliable', 'best_effort'),
    'depth_resolution': ('input', 'processing'),
    'steps': ('auto', '1', '2'),
    'scale_source': SOURCES,
    'scale_correction': CORRECTIONS,
}


@dataclass(frozen=True)
class Spec:
    name: str
    default: object
    description: str
    range: tuple | None = None      # (min, max) for ints and doubles
    read_only: bool = False
    dynamic: bool = False           # accepts more than one type (steps: 'auto' or 1/2)


PARAMETERS = (
    # Model (a change needs a restart: read-only).
    Spec('checkpoint', '', 'Checkpoint directory (diffusers layout). Empty: the packaged model.',
         read_only=True),
    Spec('device', 'auto', DESCRIPTIONS['device'], read_only=True),
    Spec('dtype', 'auto', DESCRIPTIONS['dtype'], read_only=True),
    Spec('mode', 'exact', DESCRIPTIONS['mode'], read_only=True),
    Spec('compile', 'off', DESCRIPTIONS['compile'] + ' The warm-up compiles the configured '
         'processing resolution; one the latency control picks later compiles at its first '
         'frame.', read_only=True),
    Spec('channels_last', True, 'channels_last memory format for the VAE (and the UNet on '
         'CUDA); false keeps NCHW.', read_only=True),
    Spec('torch_threads', 0, "CPU threads torch may use; 0 keeps torch's default.", (0, 256),
         read_only=True),
    Spec('warmup', True, 'Run one inference at start so the first frame is not slow.',
         read_only=True),
    # Inputs.
    Spec('input_transport', 'raw', 'raw: subscribe to `image`; compressed: to '
         '`image/compressed` (jpeg/png).', read_only=True),
    Spec('input_reliability', 'auto', 'Reliability of the image and camera_info '
         'subscriptions: auto (match the publishers), reliable or best_effort.', read_only=True),
    Spec('camera_info_cache_size', 30, 'How many recent camera_info messages are kept for '
         'exact-stamp pairing.', (1, 1000), read_only=True),
    Spec('camera_info_wait_ms', 50.0, 'How long a frame waits for the camera_info with its '
         'exact stamp before the newest one is used.', (0.0, 1000.0)),
    Spec('rectify', 'auto', 'Rectify raw images with camera_info K, D, R, P (as image_proc): '
         'auto (when D has a non-zero coefficient or R is not identity), on or off (the driver '
         'already publishes image_rect). Rectified outputs live in the geometry of P.'),
    Spec('fallback_hfov_deg', DEFAULT_FALLBACK_HFOV_DEG, DESCRIPTIONS['fallback_hfov_deg'] +
         ': until a camera_info has arrived (warned once).', (1.0, 179.0)),
    # Inference and latency.
    Spec('steps', 'auto', DESCRIPTIONS['steps'] + ': auto (2 when they fit max_latency_ms, '
         'else 1), 1 or 2.', dynamic=True),
    Spec('processing_resolution', 0,
         DESCRIPTIONS['processing_resolution'] + "; 0: the checkpoint's own.", (0, 4096)),
    Spec('min_processing_resolution', 128, 'Smallest long side the latency control may go '
         'down to.', (16, 4096)),
    Spec('max_latency_ms', 1000.0, 'Budget from image arrival to published outputs; steps '
         'and resolution are chosen to fit it.', (1.0, 600000.0)),
    Spec('max_frame_age_ms', 1000.0, 'Frames that waited longer than this since arrival are '
         'dropped as stale.', (1.0, 600000.0)),
    Spec('seed', 0, DESCRIPTIONS['seed'], (0, 2 ** 31 - 1)),
    # Outputs.
    Spec('output_reliability', 'reliable', 'Reliability of all outputs (RViz subscribes '
         'reliable by default).', read_only=True),
    Spec('depth_resolution', 'input', DESCRIPTIONS['depth_resolution']),
    Spec('publish_colored', True, 'Publish depth/colored (bgr8 turbo) when subscribed.'),
    Spec('colored_min_m', 0.0, 'Near end of the colour range (m); 0: 2nd percentile of each '
         'frame.', (0.0, 10000.0)),
    Spec('colored_max_m', 0.0, 'Far end of the colour range (m); 0: 98th percentile of each '
         'frame.', (0.0, 10000.0)),
    Spec('colored_log_scale', True, 'Colour by log depth (more contrast near the camera).'),
    Spec('publish_points', True, 'Publish the organized point cloud `points` when '
         'subscribed.'),
    Spec('points_decimation', 1, 'Keep every n-th row and column in the point cloud.',
         (1, 16)),
    Spec('points_min_depth_m', 0.0, 'Points nearer than this (z, m) are NaN.', (0.0, 10000.0)),
    Spec('points_max_depth_m', 0.0, 'Points farther than this (z, m) are NaN; 0: no limit.',
         (0.0, 10000.0)),
    Spec('publish_uncertainty', False, 'Publish depth/uncertainty (m, one sigma): with a local '
         'scale correction its per-pixel uncertainty (small at the metric points, the global '
         "fit's spread away from them) on every frame, combined with |2-step - 1-step| depth on "
         'frames run with 2 steps; without one, |2-step - 1-step| on 2-step frames only.'),
    # Metric scale (docs/NODE.md "Metric scale").
    Spec('scale_source', 'none', DESCRIPTIONS['scale_source'] + ' The node reads sparse_depth '
         'from the `sparse_depth` image (32FC1 m or 16UC1 mm, 0/NaN = none) or the '
         '`sparse_points` PointCloud2 projected into the image (docs/LIDAR.md), ground_plane '
         'from camera_height_m, odometry from the `odom` nav_msgs/Odometry topic and the camera '
         "mount. With none a relative model publishes depth/relative only (docs/NODE.md "
         '"Metric scale").'),
    Spec('sparse_depth_wait_ms', 50.0, 'How long a frame waits for the sparse_depth image (or '
         'sparse_points cloud) with its exact stamp before the newest one is used.',
         (0.0, 1000.0)),
    Spec('sparse_points_mount', '', 'sparse_points: pose of the cloud\'s frame in the camera '
         'optical frame as "x y z qx qy qz qw" (m), so that p_camera = R p_cloud + t (what '
         '`ros2 run tf2_ros tf2_echo <camera optical frame> <cloud frame>` prints); used when TF '
         'has no transform at the cloud\'s stamp. Empty: TF only (docs/LIDAR.md).'),
    Spec('sparse_points_occlusion_gap', 0.1, 'sparse_points: a projected point is dropped as '
         'hidden from the camera when a point this much (relative) nearer lies within their '
         'parallax towards the LiDAR\'s side (a LiDAR mounted apart from the camera sees '
         'background past the edges of nearer objects); 0: nearest point per pixel only.',
         (0.0, 10.0)),
    Spec('camera_height_m', 0.0, DESCRIPTIONS['camera_height_m'], (0.0, 1000.0)),
    Spec('ground_max_tilt_deg', GROUND_MAX_TILT_DEG, DESCRIPTIONS['ground_max_tilt_deg'],
         (0.0, 89.0)),
    Spec('camera_mount', '', DESCRIPTIONS['camera_mount'] + ' as one string "x y z qx qy qz '
         'qw"; empty: from TF (child_frame_id -> the image frame_id).'),
    Spec('odometry_wait_ms', 30.0, 'odometry: how long a frame waits for the odometry message '
         'after its stamp (the pose is interpolated between the two around it).',
         (0.0, 1000.0)),
    Spec('scale_correction', 'local', DESCRIPTIONS['scale_correction'] + ' The node reports '
         'it in the local_* diagnostics; ground_plane gives no points: global only.'),
    Spec('wait_for_scale', True, DESCRIPTIONS['wait_for_scale'] + ' The node then holds '
         'depth, points and depth/colored, counts the frames as waiting_for_scale and says in '
         'the diagnostics (waiting_for) what it waits for (also when the source cannot work, '
         'e.g. ground_plane without camera_height_m). No effect with scale_source none.'),
    Spec('scale_smoothing', 0.0, DESCRIPTIONS['scale_smoothing'], (0.0, 0.99)),
)
SPECS = {spec.name: spec for spec in PARAMETERS}
# Sections of config/depth.yaml and of docs/NODE.md's table, by the parameter that opens each;
# a parameter belongs to the section of the one before it in PARAMETERS.
SECTIONS = {'checkpoint': 'model', 'input_transport': 'inputs',
            'steps': 'inference and latency', 'output_reliability': 'outputs',
            'scale_source': 'metric scale'}


class ParameterError(ValueError):
    """A parameter value the node cannot use (message names the parameter and the fix)."""


def full_description(spec: Spec) -> str:
    """The description `ros2 param describe` shows: the spec's, then its choices."""
    choices = CHOICES.get(spec.name)
    return spec.description + (' One of: ' + ', '.join(choices) + '.' if choices else '')


def descriptor(spec: Spec) -> ParameterDescriptor:
    """ParameterDescriptor with description, type, range and read-only flag."""
    desc = ParameterDescriptor(name=spec.name, description=full_description(spec),
                               read_only=spec.read_only, dynamic_typing=spec.dynamic)
    if spec.dynamic:
        return desc
    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    desc.type = types[type(spec.default)]
    if spec.range is not None and isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=spec.range[0], to_value=spec.range[1],
                                           step=1)]
    elif spec.range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=spec.range[0],
                                                        to_value=spec.range[1], step=0.0)]
    return desc


def normalise(name: str, value):
    """The value the node uses for `name`, or ParameterError saying what is expected."""
    if name == 'steps':
        text = str(value).strip().lower() if not isinstance(value, bool) else ''
        if text not in CHOICES['steps']:
            raise ParameterError(f'`steps` must be auto, 1 or 2, got {value!r}.')
        return text
    choices = CHOICES.get(name)
    if choices and value not in choices:
        raise ParameterError(f'`{name}` must be one of {", ".join(choices)}, got {value!r}.')
    if name in ('camera_mount', 'sparse_points_mount'):
        from metricgold_core.camera.poses import parse_mount

        try:
            parse_mount(value)
        except ValueError as exc:
            raise ParameterError(f'`{name}` must be "x y z qx qy qz qw" or empty (TF), got '
                                 f'{value!r}: {exc}') from exc
    if name == 'device':
        try:
            check_device(value)
        except ValueError as exc:
            raise ParameterError(str(exc)) from exc
    return value


def check_consistency(config: dict) -> None:
    """Relations between parameters that a single range cannot express."""
    lo, hi = config['colored_min_m'], config['colored_max_m']
    if lo > 0 and hi > 0 and lo >= hi:
        raise ParameterError(f'`colored_min_m` ({lo}) must be below `colored_max_m` ({hi}).')
    lo, hi = config['points_min_depth_m'], config['points_max_depth_m']
    if hi > 0 and lo >= hi:
        raise ParameterError(f'`points_min_depth_m` ({lo}) must be below '
                             f'`points_max_depth_m` ({hi}).')
    res, low = config['processing_resolution'], config['min_processing_resolution']
    if 0 < res < low:
        raise ParameterError(f'`processing_resolution` ({res}) must be 0 or at least '
                             f'`min_processing_resolution` ({low}).')
