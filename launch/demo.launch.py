"""The end-to-end demo under ROS 2 launch: camera replay -> depth node -> recorder (+ report).

    ros2 launch metricgold_ros demo.launch.py out:=/tmp/demo_output count:=24 rate:=2.0

The same three processes as `metricgold_demo` (make demo), which runs them without launch.
The camera publishes held-out procedural scenes (or `images:=DIR`) on /demo_camera; the node
runs in /demo; the recorder saves its outputs under `out`, writes the report and ends the
launch. Set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in the environment for large images.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = 'metricgold_ros'
CAMERA_NAMESPACE = '/demo_camera'   # as metricgold_demo.CAMERA_NAMESPACE
NODE_NAMESPACE = '/demo'            # as metricgold_demo.NODE_NAMESPACE


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', 'depth.yaml')
    out, count = LaunchConfiguration('out'), LaunchConfiguration('count')
    images = LaunchConfiguration('images')
    image, camera_info = CAMERA_NAMESPACE + '/image', CAMERA_NAMESPACE + '/camera_info'
    camera_arguments = ['--out', out, '--count', count, '--rate', LaunchConfiguration('rate')]
    has_images = PythonExpression(["'", images, "' != ''"])
    recorder = Node(
        package=PACKAGE, executable='demo_recorder', name='metricgold_demo_recorder',
        namespace=NODE_NAMESPACE, output='screen',
        arguments=['--out', out, '--count', count, '--camera-topic', image, '--report'])
    return LaunchDescription([
        DeclareLaunchArgument('out', default_value='demo_output',
                              description='Output folder of frames, depth and the report.'),
        DeclareLaunchArgument('count', default_value='24', description='Frames to publish.'),
        DeclareLaunchArgument('rate', default_value='2.0', description='Camera rate (Hz).'),
        DeclareLaunchArgument('images', default_value='',
                              description='Replay this image folder instead of scenes.'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='Depth node parameters (YAML).'),
        Node(package=PACKAGE, executable='depth_node', name='metricgold_depth',
             namespace=NODE_NAMESPACE, parameters=[LaunchConfiguration('params_file')],
             remappings=[('image', image), ('camera_info', camera_info)], output='screen'),
        recorder,
        Node(package=PACKAGE, executable='camera_replay', name='metricgold_camera_replay',
             output='screen', remappings=[('image', image), ('camera_info', camera_info)],
             arguments=camera_arguments, condition=UnlessCondition(has_images)),
        Node(package=PACKAGE, executable='camera_replay', name='metricgold_camera_replay',
             output='screen', remappings=[('image', image), ('camera_info', camera_info)],
             arguments=camera_arguments + ['--images', images],
             condition=IfCondition(has_images)),
        # The recorder ends after the last frame (or the camera's exit plus a grace period).
        RegisterEventHandler(OnProcessExit(target_action=recorder,
                                           on_exit=[EmitEvent(event=Shutdown())])),
    ])
