"""Dataset names -> reader classes, and one factory used by the evaluate command and trainers."""
from __future__ import annotations

import importlib

# name -> 'module:Class' (imported on use: h5py etc. only load when their reader is asked for)
DATASETS = {
    'hypersim': 'metricgold_core.data.synthetic:HypersimDataset',
    'vkitti2': 'metricgold_core.data.synthetic:VirtualKITTI2Dataset',
    'tartanair': 'metricgold_core.data.synthetic:TartanAirDataset',
    'nyuv2': 'metricgold_core.data.benchmarks:NYUv2Dataset',
    'kitti': 'metricgold_core.data.benchmarks:KITTIDataset',
    'eth3d': 'metricgold_core.data.benchmarks:ETH3DDataset',
    'diode': 'metricgold_core.data.benchmarks:DIODEDataset',
    'scannet': 'metricgold_core.data.benchmarks:ScanNetDataset',
    'tum': 'metricgold_core.data.rgbd:TUMDataset',
    'icl_nuim': 'metricgold_core.data.rgbd:ICLNUIMDataset',
    'redwood': 'metricgold_core.data.rgbd:RedwoodDataset',
    'kinect': 'metricgold_core.data.rgbd:KinectDataset',
    'folder': 'metricgold_core.data.rgbd:GenericFolderDataset',
}


def dataset_class(name: str):
    """The reader class registered under `name`; ValueError listing the names otherwise."""
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; choose one of {", ".join(sorted(DATASETS))} '
                         f'(or `procedural`).')
    module_name, class_name = DATASETS[name].split(':')
    return getattr(importlib.import_module(module_name), class_name)


def make_dataset(name: str, root, split=None, **kwargs):
    """A reader instance for dataset `name` rooted at `root` (optionally a split file)."""
    return dataset_class(name)(root, split=split, **kwargs)
