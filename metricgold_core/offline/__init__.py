"""Offline processing of recordings: image folders, videos and rosbag2 bags (no ROS needed).

`sources` turns an input into frames, `ply` writes point clouds as PLY files, and
`bag_reader` / `bag_writer` read and write rosbag2 (sqlite3 or MCAP) with the pure-Python
`rosbags` library. The `metricgold process` command ties them together.

May import: numpy, rosbags / PyAV (on use), and of the core ros_format, camera, data (intrinsics
files) and io_utils; never the model: `process` runs it and hands the depth over.
"""
