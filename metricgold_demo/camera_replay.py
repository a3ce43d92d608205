"""A camera for the demo: publishes `image` (rgb8) + `camera_info` at a fixed rate.

Frames are procedural scenes with metric ground truth (saved as gt/<index>.npy beside a
frames index) or the images of a folder (no ground truth). `--trajectory N` then adds N frames
of a camera moving through one procedural layout (data/trajectory.py, filmed at the publishing
rate) whose true poses go into frames.json, so the report can fuse the node's depth into a map.
With `--odometry-node NODE` the drive is then replayed once more as the robot's odometry
would see it: before its first frame the camera switches NODE (the depth node) to `scale_source:
odometry` with the demo's camera mount, and with each frame it publishes nav_msgs/Odometry on
`odom` (odom -> base_link, the image's stamp; base_link carries the camera at CAMERA_MOUNT), so
the report can fuse the same drive without and with the odometry scale source.
Every frame is rendered before publishing starts, so the rate is steady; frames.json is
rewritten after each frame, so it lists every frame sent so far whenever a reader looks.

    camera_replay --count 20 --rate 2 --out demo_output   (python -m metricgold_demo.camera_replay)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

from metricgold_core.camera.geometry import DEFAULT_FALLBACK_HFOV_DEG
from . import CAMERA_MOUNT, spin_for

FRAME_ID = 'camera_optical_frame'
ODOM_FRAME, BASE_FRAME = 'odom', 'base_link'
# The trajectory's world is y-up; a ROS odom frame is z-up: odom <- world, +90 deg about x.
ODOM_FROM_WORLD = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
TRAJECTORY_SEED = 910007   # a held-out room
# The robot drives forward through it. Turning (a full circle in 16 frames at 2 Hz: 24 deg
# between frames) leaves the odometry source no earlier frame within its 10 deg rotation
# gate: no scale fit, and wait_for_scale holds every frame of the drive back.
TRAJECTORY_MOTION = 'forward'


def procedural_frames(count: int, height: int, width: int, seed: int, hfov_deg: float):
    """[(name, rgb, K, gt_depth_or_None, None)] of held-out procedural scenes, indoor/outdoor,
    all filmed by one camera of `hfov_deg` (a real camera's focal does not change per frame)."""
    from metricgold_core.data.procedural import render_scene
    from metricgold_core.camera.geometry import intrinsics_from_hfov
    kinds = ('indoor', 'outdoor')
    K = intrinsics_from_hfov(width, height, hfov_deg)
    frames = []
    for i in range(count):
        scene = render_scene(seed + i, height, width, kind=kinds[i % 2], K=K)
        frames.append((f'{scene["kind"]}_{seed + i}', scene['rgb'], scene['K'], scene['depth'],
                       None))
    return frames


def trajectory_frames(count: int, height: int, width: int, seed: int, kind: str,
                      rate_hz: float, hfov_deg: float, motion: str | None = TRAJECTORY_MOTION):
    """[(name, rgb, K, gt_depth, {pose, sequence, kind})] of one procedural trajectory filmed
    at `rate_hz` by the same camera as the scenes (a robot's speed in real time)."""
    from metricgold_core.data.trajectory import render_trajectory
    from metricgold_core.camera.geometry import intrinsics_from_hfov
    K = intrinsics_from_hfov(width, height, hfov_deg)
    seq = render_trajectory(seed, height, width, kind=kind, frames=count, fps=rate_hz, K=K,
                            motion=motion)
    return [(f'trajectory_{i:02d}', seq['rgb'][i], seq['K'], seq['depth'][i],
             {'pose': seq['poses'][i].tolist(), 'sequence': seq['name'], 'kind': seq['kind'],
              'odometry': False})
            for i in range(count)]


def with_odometry(frames: list) -> list:
    """The trajectory `frames` again, as the drive with odometry: renamed odometry_NN and
    marked, so that the camera publishes the robot's odometry with each."""
    return [(name.replace('trajectory', 'odometry'), rgb, K, gt, {**motion, 'odometry': True})
            for name, rgb, K, gt, motion in frames]


def base_pose(camera_pose) -> np.ndarray:
    """4x4 base_link -> odom pose of the robot whose camera optical frame is at `camera_pose`
    (camera -> trajectory world) and mounted at CAMERA_MOUNT: what its odometry publishes."""
    from metricgold_core.camera.poses import mount_matrix
    mount = mount_matrix(CAMERA_MOUNT.split())
    return ODOM_FROM_WORLD @ np.asarray(camera_pose, np.float64) @ np.linalg.inv(mount)


def switch_to_odometry(node, target: str, timeout_s: float = 10.0) -> str:
    """Set `target` (a depth node's name) to scale_source odometry with the demo's camera
    mount, both at once; '' or why it failed."""
    import rclpy
    from rcl_interfaces.srv import SetParametersAtomically
    from rclpy.parameter import Parameter

    client = node.create_client(SetParametersAtomically, f'{target}/set_parameters_atomically')
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return f'no parameter service of {target}'
        request = SetParametersAtomically.Request(parameters=[
            Parameter('camera_mount', value=CAMERA_MOUNT).to_parameter_msg(),
            Parameter('scale_source', value='odometry').to_parameter_msg()])
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
        if not future.done() or future.result() is None:
            return f'{target} did not answer'
        result = future.result().result
        return '' if result.successful else f'{target} refused: {result.reason}'
    finally:
        node.destroy_client(client)


def folder_frames(folder: Path, count: int, hfov_deg: float):
    """Images of a folder (sorted); K from intrinsics.json there or one level up, else from
    `hfov_deg`."""
    from metricgold_core.io_utils import read_rgb
    from metricgold_core.offline.sources import DefaultCamera, folder_images, load_intrinsics
    found = [p / 'intrinsics.json' for p in (folder, folder.parent)
             if (p / 'intrinsics.json').is_file()]
    camera = DefaultCamera(load_intrinsics(found[0]) if found else None, hfov_deg)
    frames = []
    for path in folder_images(folder)[:count or None]:
        rgb = read_rgb(path)
        frames.append((path.stem, rgb, camera.camera(*rgb.shape[:2]).K, None, None))
    return frames


def save_ground_truth(out: Path, frames) -> None:
    from metricgold_core.io_utils import save_npy, save_png
    (out / 'gt').mkdir(parents=True, exist_ok=True)
    (out / 'rgb').mkdir(parents=True, exist_ok=True)
    for i, (name, rgb, K, gt, _) in enumerate(frames):
        save_png(out / 'rgb' / f'{i:04d}.png', rgb)
        if gt is not None:
            save_npy(out / 'gt' / f'{i:04d}.npy', gt.astype(np.float32))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', default=None, help='publish this folder instead of scenes')
    p.add_argument('--count', type=int, default=20)
    p.add_argument('--rate', type=float, default=2.0, help='frames per second')
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--seed', type=int, default=900000, help='first scene seed (held out)')
    p.add_argument('--hfov-deg', type=float, default=DEFAULT_FALLBACK_HFOV_DEG,
                   help='horizontal FOV of the camera (scenes; folders without intrinsics.json)')
    p.add_argument('--trajectory', type=int, default=0, metavar='N',
                   help='then N frames of a procedural trajectory with true poses (0 = none)')
    p.add_argument('--trajectory-kind', choices=('indoor', 'outdoor'), default='indoor',
                   help='indoor: a ground robot; outdoor: a car')
    p.add_argument('--trajectory-seed', type=int, default=TRAJECTORY_SEED,
                   help='layout and path seed of the trajectory (held out)')
    p.add_argument('--trajectory-motion', choices=('forward', 'turning', 'sideways'),
                   default=TRAJECTORY_MOTION, help='how the platform moves')
    p.add_argument('--odometry-node', default=None, metavar='NODE',
                   help='then replay the trajectory again with odometry on `odom`, after '
                   'switching the depth node NODE to scale_source odometry')
    p.add_argument('--wait-subscribers', type=float, default=60.0,
                   help='seconds to wait for a subscriber before publishing')
    p.add_argument('--out', required=True, help='folder for frames.json and ground truth')
    return p.parse_args(argv)


def main(argv=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from rclpy.utilities import remove_ros_args

    from metricgold_core.io_utils import save_text
    from metricgold_core.ros_format import stamp_ns
    from metricgold_core.camera.geometry import CameraModel
    from metricgold_ros.outputs import array_to_image, scaled_camera_info

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(remove_ros_args(['camera_replay'] + argv)[1:])
    out = Path(args.out)
    if args.images:
        try:
            frames = folder_frames(Path(args.images), args.count, args.hfov_deg)
        except ValueError as exc:  # no images, unreadable image or intrinsics: say which
            raise SystemExit(f'camera_replay: {exc}') from exc
    else:
        frames = procedural_frames(args.count, args.height, args.width, args.seed,
                                   args.hfov_deg)
    if args.trajectory > 0:
        drive = trajectory_frames(args.trajectory, args.height, args.width,
                                  args.trajectory_seed, args.trajectory_kind, args.rate,
                                  args.hfov_deg, args.trajectory_motion)
        frames += drive + (with_odometry(drive) if args.odometry_node else [])
    save_ground_truth(out, frames)

    rclpy.init(args=['camera_replay'] + argv)
    node = rclpy.create_node('metricgold_camera_replay')
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = node.create_publisher(Image, 'image', qos)
    info_pub = node.create_publisher(CameraInfo, 'camera_info', qos)
    odom_pub = None
    if args.odometry_node:
        from metricgold_ros.harness.messages import odometry_msg
        from metricgold_ros.odometry import odometry_type
        odom_pub = node.create_publisher(odometry_type(), 'odom', QoSProfile(
            depth=50, reliability=ReliabilityPolicy.RELIABLE))
    index = []
    try:
        deadline = time.monotonic() + args.wait_subscribers
        while image_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        # Matching completes in both directions a moment after the count changes; a reliable
        # message sent before that is lost.
        time.sleep(1.0)
        period = 1.0 / args.rate
        start = time.monotonic()
        switched = False
        for i, (name, rgb, K, gt, motion) in enumerate(frames):
            odometry = bool((motion or {}).get('odometry'))
            if odometry and not switched:
                # half a period after the last frame without odometry, on the rate's schedule:
                # the node reads its parameters once per frame, and the switch starts a new
                # scale session (no history from the drive before)
                time.sleep(max(0.0, start + (i - 0.5) * period - time.monotonic()))
                why = switch_to_odometry(node, args.odometry_node)
                if why:
                    raise SystemExit(f'camera_replay: {why}')
                switched = True
                print(f'camera_replay: {args.odometry_node} switched to scale_source odometry',
                      flush=True)
            time.sleep(max(0.0, start + i * period - time.monotonic()))
            header = Header()
            header.stamp = node.get_clock().now().to_msg()
            header.frame_id = FRAME_ID
            if odometry:   # before the image: the node finds the pose at its stamp
                odom_pub.publish(odometry_msg(base_pose(motion['pose']), stamp_ns(header),
                                              ODOM_FRAME, BASE_FRAME))
            camera = CameraModel.from_K(K, *rgb.shape[:2])
            info_pub.publish(scaled_camera_info(None, camera, header))   # a plain pinhole
            image_pub.publish(array_to_image(np.ascontiguousarray(rgb), 'rgb8', header))
            index.append({'index': i, 'name': name, 'stamp_ns': stamp_ns(header),
                          'has_gt': gt is not None, 'K': K.tolist(),
                          'height': int(rgb.shape[0]), 'width': int(rgb.shape[1]),
                          **(motion or {})})
            save_text(out / 'frames.json', json.dumps(index, indent=1) + '\n')
            rclpy.spin_once(node, timeout_sec=0.0)
        spin_for(node, 2.0)  # reliable delivery of the last frames needs the writer alive
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        save_text(out / 'frames.json', json.dumps(index, indent=1) + '\n')
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'camera_replay: published {len(index)} frames at {args.rate} Hz', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
