"""Offline processing of recordings: image folders, videos and rosbag2 bags (no ROS needed).

`sources` turns an input into frames, `clouds` packs points and writes PLY files, and
`bag_reader` / `bag_writer` read and write rosbag2 (sqlite3 or MCAP) with the pure-Python
`rosbags` library. The `metricgold process` command ties them together.
"""
