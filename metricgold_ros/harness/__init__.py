"""The harness that tests and benchmark scripts share to run the depth node and talk to it.

    process    ROS environment (one domain per run, discovery on this host, the node's Fast DDS
               profile or LARGE_DATA), the node as a child process: start, wait ready, stop
    messages   Image, CameraInfo, PointCloud2 and Odometry messages built from numpy arrays
    encodings  rgb8 pixels as every driver encoding (Bayer, YUV, NV21, 16 bit), lens distortion
    client     an rclpy client in its own context, and the Rig that sends frames and waits for
               the answers
    stream     benchmarks' camera stream: frames at a rate, latency figures
    checks     the node's outputs against what was sent (cloud vs depth, colours, AbsRel)

Importing it imports no ROS module (rclpy and the messages load when used), so scripts and
tests without ROS can import it. Tests import it directly or through test/node_harness.py.
"""
from metricgold_ros.harness.checks import abs_rel, check_cloud_matches_depth, colours_match
from metricgold_ros.harness.checks import depth_array
from metricgold_ros.harness.client import answering, Client, NODE, Rig, shut_down, STAMPS
from metricgold_ros.harness.client import started_rig
from metricgold_ros.harness.encodings import distort, encoded_image_msg, ENCODERS, EQUIDISTANT
from metricgold_ros.harness.encodings import mosaic, nv21, PLUMB_BOB, rgb_to_yuv601, to16
from metricgold_ros.harness.encodings import undistorted_coords, with_alpha, yuv422
from metricgold_ros.harness.messages import camera_info_msg, camera_messages, cloud_msg
from metricgold_ros.harness.messages import image_msg, load_sequence, odometry_msg
from metricgold_ros.harness.messages import PRIMESENSE_640, raw_camera_info_msg
from metricgold_ros.harness.process import CAMERA_REMAPS, DEPTH_NODE, node_command, NodeProcess
from metricgold_ros.harness.process import PACKAGE_PARENT, pick_domain_id, ros_env, wait_until
from metricgold_ros.harness.process import use_env, write_params
from metricgold_ros.harness.stream import latency_stats, percentile, publish_paced, stream_image

__all__ = [
    'abs_rel', 'answering', 'camera_info_msg', 'camera_messages', 'CAMERA_REMAPS',
    'check_cloud_matches_depth', 'Client', 'cloud_msg', 'colours_match', 'depth_array',
    'DEPTH_NODE', 'distort', 'encoded_image_msg', 'ENCODERS', 'EQUIDISTANT', 'image_msg',
    'latency_stats', 'load_sequence', 'mosaic', 'NODE', 'node_command', 'NodeProcess', 'nv21',
    'odometry_msg', 'PACKAGE_PARENT', 'percentile', 'pick_domain_id', 'PLUMB_BOB',
    'PRIMESENSE_640', 'publish_paced', 'raw_camera_info_msg', 'rgb_to_yuv601', 'Rig', 'ros_env',
    'shut_down', 'STAMPS', 'started_rig', 'stream_image', 'to16', 'undistorted_coords', 'use_env',
    'wait_until', 'with_alpha', 'write_params', 'yuv422',
]
