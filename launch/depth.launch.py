"""Launch the MetricGold depth node.

    ros2 launch metricgold_ros depth.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info namespace:=camera params_file:=/path/to/depth.yaml

Outputs appear under the namespace: depth, depth/camera_info, depth/colored, points,
depth/uncertainty (and /diagnostics).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'metricgold_ros'


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', 'depth.yaml')
    image = LaunchConfiguration('image')
    camera_info = LaunchConfiguration('camera_info')
    sparse_depth = LaunchConfiguration('sparse_depth')
    sparse_points = LaunchConfiguration('sparse_points')
    odom = LaunchConfiguration('odom')
    return LaunchDescription([
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='Camera image topic (sensor_msgs/Image).'),
        DeclareLaunchArgument('camera_info', default_value='/camera/camera_info',
                              description='CameraInfo topic of that camera.'),
        DeclareLaunchArgument('sparse_depth', default_value='sparse_depth',
                              description='Sparse metric depth registered to the image '
                              '(sensor_msgs/Image), used when scale_source is sparse_depth.'),
        DeclareLaunchArgument('sparse_points', default_value='sparse_points',
                              description='LiDAR cloud (sensor_msgs/PointCloud2) used as sparse '
                              'metric depth when scale_source is sparse_depth (placed by TF or '
                              'sparse_points_mount).'),
        DeclareLaunchArgument('odom', default_value='odom',
                              description='Odometry (nav_msgs/Odometry) used when scale_source '
                              'is odometry.'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='Node parameters (YAML).'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its outputs.'),
        Node(
            package=PACKAGE,
            executable='depth_node',
            name='metricgold_depth',
            namespace=LaunchConfiguration('namespace'),
            parameters=[LaunchConfiguration('params_file')],
            # image/compressed follows image, as image_transport names it.
            remappings=[('image', image), ('camera_info', camera_info),
                        ('image/compressed', [image, '/compressed']),
                        ('sparse_depth', sparse_depth), ('sparse_points', sparse_points),
                        ('odom', odom)],
            output='screen',
            emulate_tty=True,
        ),
    ])
