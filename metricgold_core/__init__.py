"""MetricGold core: log-depth codec, model, 1-2 step depth pipeline, data, metrics, training.

Pure Python + torch; never imports ROS.
"""
from .codec import LogDepthCodec

__all__ = ['LogDepthCodec', 'MetricGoldModel', 'DepthEstimator', 'DepthPrediction']
__version__ = '0.1.0'


def __getattr__(name):  # lazy: importing the codec must not pull in diffusers
    if name == 'MetricGoldModel':
        from .model import MetricGoldModel
        return MetricGoldModel
    if name in ('DepthEstimator', 'DepthPrediction'):
        from . import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
