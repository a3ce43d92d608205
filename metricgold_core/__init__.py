"""MetricGold core: one camera image -> metric depth, and everything around it.

    io_utils, visualize   atomic writes and image files; depth pictures (import no other part)
    camera/               CameraModel, intrinsics, rays, rectification, poses
    model/                the codec, the model and its checkpoint, the 1-2 step pipeline
    scale/                metric scale: sparse depth, LiDAR, ground plane, odometry; the session
    ros_format/           the ROS message formats, without ROS (node and bags share them)
    data/                 dataset readers, procedural scenes and trajectories
    evaluation/           metrics per frame, depth over time, fused maps
    metric_depth          the one image + camera -> metres call (model + camera + scale)
    offline/, training/   `process` inputs and bags; the training loop
    commands/, cli        the `metricgold` subcommands (the only part that imports every other)

Each package's docstring says what it may import; test/test_layout.py holds the table and
checks it. Pure Python + torch; never imports ROS. Names here load lazily: the node reads
messages with metricgold_core.ros_format before it has validated its parameters and imported
torch.
"""
__all__ = ['LogDepthCodec', 'MetricGoldModel', 'DepthEstimator', 'DepthPrediction']
__version__ = '0.1.0'


def __getattr__(name):  # lazy: importing the package must not pull in torch or diffusers
    if name == 'LogDepthCodec':
        from .model.codec import LogDepthCodec
        return LogDepthCodec
    if name == 'MetricGoldModel':
        from .model.network import MetricGoldModel
        return MetricGoldModel
    if name in ('DepthEstimator', 'DepthPrediction'):
        from .model import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
