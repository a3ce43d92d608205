"""The depth model and its pipeline: image in, depth at the checkpoint's own focal out.

    codec              LogDepthCodec: metres <-> the log-depth code the VAE sees
    network            MetricGoldModel: build / load / save (diffusers parts), the packaged model
    checkpoint_format  file names, format version, JSON and pickle rules of a checkpoint
    presets            architecture presets (tiny test models ... Stable Diffusion size)
    light_decoder      the fast mode's light decoder head
    vae_rewrites       the VAE decoder rewritten for speed (pooled attention), encode_mean
    precision          which parts stay float32 under a reduced dtype
    run_options        device / dtype / mode / compile choices and their texts
    image_processing   resize / pad / normalise, back to the input resolution
    pipeline           DepthEstimator: image -> DepthPrediction (canonical metres, timings)

May import: torch, diffusers, numpy, and of the core only io_utils. Knows no camera, no scale
anchor and no ROS: metric_depth puts the camera and the scale on top.
"""
