"""MetricGold: metric depth from one camera image, as a ROS 2 (ament_python) package."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'metricgold_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    # metricgold_demo (camera replay, recorder, report) ships beside the node, not inside it.
    packages=find_packages(include=['metricgold_core', 'metricgold_core.*',
                                    'metricgold_ros', 'metricgold_ros.*', 'metricgold_demo']),
    package_data={'metricgold_core': ['default_model/*', 'default_model/*/*'],
                  'metricgold_ros': ['fastdds_profile.xml']},
    include_package_data=True,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        (os.path.join('share', PACKAGE), ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*')),
    ],
    python_requires='>=3.10',
    # rclpy and the message packages come from ROS 2 (apt/rosdep, or the ros-* PyPI wheels the
    # Makefile installs when no ROS is sourced); they are not pip requirements on purpose.
    install_requires=[
        'torch>=2.1',
        'diffusers>=0.30',
        'numpy>=1.24',
        'pillow>=9.0',
        # Bayer / YUV decoding and rectification (python3-opencv in package.xml)
        'opencv-python-headless>=4.5',
        'safetensors>=0.4',
        'pyyaml>=6.0',
        'tqdm>=4.60',
    ],
    extras_require={
        'test': ['pytest>=7', 'transformers>=4.40', 'rosbags>=0.11', 'av>=12', 'flake8>=6',
                 'flake8-import-order>=0.18', 'open3d-cpu>=0.18'],
        'train': ['accelerate>=0.30', 'tensorboard>=2.10', 'h5py>=3.8'],
        'data': ['h5py>=3.8'],
        # `metricgold process`: rosbags reads/writes bags without ROS; av (PyAV, FFmpeg in its
        # wheels) decodes videos. Both are imported only when such an input is given.
        'process': ['rosbags>=0.11', 'av>=12'],
        # fused maps of sequence evaluation and the demo's map (TSDF): never needed by the node.
        # Its wheels need the system library libusb-1.0.so.0 (Debian: libusb-1.0-0).
        'map': ['open3d-cpu>=0.18'],
    },
    zip_safe=True,
    maintainer='MetricGold maintainers',
    maintainer_email='maintainers@metricgold.invalid',
    description='Monocular metric depth (latent diffusion, log-depth codec) as a ROS 2 node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'depth_node = metricgold_ros.depth_node:main',
            'metricgold = metricgold_core.cli:main',
            'metricgold_demo = metricgold_demo.run:main',
            'camera_replay = metricgold_demo.camera_replay:main',
            'demo_recorder = metricgold_demo.recorder:main',
        ],
    },
)
