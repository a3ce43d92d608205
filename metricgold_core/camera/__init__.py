"""Camera geometry: the one camera type and the maths of pinhole images and poses.

    geometry   CameraModel, intrinsics (scale, crop, from a field of view), rays,
               back-projection, the canonical-focal factors
    rectify    undistortion maps from CameraInfo's K, D, R, P (as image_proc)
    poses      quaternions, 4x4 rigid poses, TUM files, the pose buffer interpolated at a stamp

May import: numpy, OpenCV, and of the core only io_utils. Everything else that needs a camera
imports this package; it imports none of them.
"""
