"""Training and benchmark data: procedural scenes and dataset readers.

Every sample is a dict: `rgb` uint8 (H, W, 3), `depth` float32 (H, W) metres (NaN = invalid),
`valid` bool (H, W), `K` float64 (3, 3), `name` str (plus `kind` for procedural scenes).
Submodules are imported on use so that reading one format never pulls in another's dependencies.

May import: numpy, PIL, OpenCV, torch (datasets), and of the core camera and io_utils.
"""
