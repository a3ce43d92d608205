"""sensor_msgs Image / CompressedImage -> numpy (metricgold_core.ros_format.images): the
common encodings, row padding, endianness, malformed messages, jpeg / png."""
import io

import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CompressedImage

from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format.images import compressed_to_rgb8, image_to_array, image_to_rgb8
from node_harness import image_msg

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize('pad', [0, 7])
@pytest.mark.parametrize('encoding,make', [
    ('rgb8', lambda rgb: rgb),
    ('bgr8', lambda rgb: rgb[..., ::-1]),
    ('8UC3', lambda rgb: rgb[..., ::-1]),
    ('rgba8', lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], 2)),
    ('bgra8', lambda rgb: np.concatenate([rgb[..., ::-1], np.zeros(rgb.shape[:2] + (1,),
                                                                   np.uint8)], 2)),
])
def test_colour_encodings_give_rgb_and_skip_row_padding(encoding, make, pad):
    msg = image_msg(make(RGB), encoding, 0, pad=pad)
    assert msg.step == RGB.shape[1] * (4 if 'a' in encoding else 3) + pad
    np.testing.assert_array_equal(image_to_rgb8(msg), RGB)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8_is_replicated_to_grey_rgb(encoding):
    gray = RGB[..., 0]
    out = image_to_rgb8(image_msg(gray, encoding, 0, pad=3))
    assert out.shape == (12, 10, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
def test_mono16_honours_endianness_and_scales_min_to_max(encoding, bigendian):
    gray = (RNG.integers(0, 4096, (12, 10))).astype(np.uint16)   # 12-bit IR-like
    gray[0, 0], gray[0, 1] = 100, 4000
    msg = image_msg(gray, encoding, 0, pad=2, bigendian=bigendian)
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], gray)
    out = image_to_rgb8(msg)
    expected = ((gray.astype(np.float32) - gray.min()) * 255.0 / (gray.max() - gray.min()) + 0.5)
    np.testing.assert_array_equal(out[..., 1], expected.astype(np.uint8))
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255


def test_float_intensity_with_nan_or_inf_is_refused():
    values = RNG.random((12, 10)).astype(np.float32)
    assert image_to_rgb8(image_msg(values, '32FC1', 0)).shape == (12, 10, 3)
    for bad in (np.nan, np.inf):
        values[3, 3] = bad
        with pytest.raises(BadInput) as info:
            image_to_rgb8(image_msg(values, '32FC1', 0))
        assert info.value.kind == 'nonfinite'


@pytest.mark.parametrize('mutate,kind', [
    (lambda m: setattr(m, 'encoding', 'nv24'), 'encoding'),
    (lambda m: setattr(m, 'encoding', ''), 'encoding'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'data'),
    (lambda m: setattr(m, 'step', 29), 'size'),   # < width x 3
    (lambda m: (setattr(m, 'height', 0), setattr(m, 'data', b'')), 'size'),
    (lambda m: setattr(m, 'width', 0), 'size'),
    (lambda m: (setattr(m, 'width', 100000), setattr(m, 'step', 300000)), 'size'),
    (lambda m: setattr(m, 'height', 5000), 'data'),   # claims more rows than it carries
])
def test_malformed_images_raise_bad_input_with_a_kind(mutate, kind):
    msg = image_msg(RGB, 'rgb8', 0)
    mutate(msg)
    with pytest.raises(BadInput) as info:
        image_to_rgb8(msg)
    assert info.value.kind == kind
    assert str(info.value)


def test_odd_step_for_16_bit_is_refused():
    msg = image_msg(RGB[..., 0].astype(np.uint16), 'mono16', 0, pad=1)
    with pytest.raises(BadInput, match='multiple'):
        image_to_rgb8(msg)


@pytest.mark.parametrize('fmt,pil_format', [('jpeg', 'JPEG'), ('png', 'PNG'),
                                            ('rgb8; jpeg compressed bgr8', 'JPEG')])
def test_compressed_images_decode_to_rgb(fmt, pil_format):
    yy, xx = np.mgrid[0:48, 0:40]   # smooth, as camera images are: JPEG keeps it close
    big = np.stack([xx * 6, yy * 5, 255 - xx * 3], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(big).save(buf, format=pil_format, quality=98)
    msg = CompressedImage(format=fmt, data=buf.getvalue())
    out = compressed_to_rgb8(msg)
    assert out.shape == big.shape and out.dtype == np.uint8
    if pil_format == 'PNG':
        np.testing.assert_array_equal(out, big)
    else:   # lossy: what a decoder makes of the bytes, and close to the original
        np.testing.assert_array_equal(out, np.asarray(PILImage.open(buf).convert('RGB')))
        assert np.abs(out.astype(int) - big).mean() < 3


@pytest.mark.parametrize('data,fmt,kind', [(b'\xff\xd8\xff\xe0garbage', 'jpeg', 'decode'),
                                           (b'', 'png', 'decode'),
                                           (b'abc', 'theora', 'encoding')])
def test_corrupt_or_unknown_compressed_images_raise(data, fmt, kind):
    with pytest.raises(BadInput) as info:
        compressed_to_rgb8(CompressedImage(format=fmt, data=data))
    assert info.value.kind == kind


def test_a_16_bit_grey_file_and_a_mono16_message_give_the_same_grey(tmp_path):
    from metricgold_core.io_utils import read_rgb

    gray = RNG.integers(300, 5000, (12, 10)).astype(np.uint16)
    PILImage.fromarray(gray).save(tmp_path / 'ir.png')
    from_file = read_rgb(tmp_path / 'ir.png')
    np.testing.assert_array_equal(from_file, image_to_rgb8(image_msg(gray, 'mono16', 0)))
    assert from_file.min() == 0 and from_file.max() == 255   # stretched min..max
