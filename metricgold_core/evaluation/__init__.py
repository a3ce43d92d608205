"""Evaluation of depth, per frame and over time.

    metrics    AbsRel, SqRel, RMSE, SILog, delta1-3, boundary F1, with masks and alignment
    sequences  depth over time: temporal alignment error (TAE), scale stability, map scores
    mapping    TSDF fusion of a sequence (Open3D, imported on use), map scoring and pictures

May import: numpy (Open3D on use), and of the core camera and visualize. The commands and
training call it; it calls no model.
"""
