"""MetricGold core: log-depth codec, model, 1-2 step depth pipeline, data, metrics, training.

Pure Python + torch; never imports ROS. Names here load lazily: the node reads messages with
metricgold_core.ros_format before it has validated its parameters and imported torch.
"""
__all__ = ['LogDepthCodec', 'MetricGoldModel', 'DepthEstimator', 'DepthPrediction']
__version__ = '0.1.0'


def __getattr__(name):  # lazy: importing the package must not pull in torch or diffusers
    if name == 'LogDepthCodec':
        from .codec import LogDepthCodec
        return LogDepthCodec
    if name == 'MetricGoldModel':
        from .model import MetricGoldModel
        return MetricGoldModel
    if name in ('DepthEstimator', 'DepthPrediction'):
        from . import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
