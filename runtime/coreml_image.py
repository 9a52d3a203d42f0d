"""Image-shaped MIL operations for the Core ML reference evaluator: transposed convolution,
bilinear/nearest resizing (Keras UpSampling2D, Resizing), depth/space rearrangements and crops.

Each follows the op's definition in ``coremltools/converters/mil/mil/ops/defs`` (NCHW layout:
the spatial axes are the last two); none has a coremltools ``value_inference``, so the tests
compare them with the documented grids and with the TensorFlow kernels the TF frontend maps
onto them (Conv2DBackpropInput, ResizeBilinear, ResizeNearestNeighbor, DepthToSpace).
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.core.errors import RuntimeFailure


def _f(x):
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


# ----------------------------------------------------------------------------- convolution
def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """Transposed convolution: every input element scatters ``weight`` into the output at
    ``i * stride + k * dilation``; the full result is then cropped by ``pad`` (``custom``), to
    ``output_shape`` or to ``D_in * stride`` (``same``: the odd element is cropped at the end, as
    TensorFlow's Conv2DBackpropInput does)."""
    x, w = _f(x), _f(weight)
    nsp = x.ndim - 2
    g = int(groups)
    strides = [1] * nsp if strides is None else [int(v) for v in np.atleast_1d(strides)]
    dilations = [1] * nsp if dilations is None else [int(v) for v in np.atleast_1d(dilations)]
    kernel = w.shape[2:]
    cin, cout_g = x.shape[1], w.shape[1]
    full = [(d - 1) * s + (k - 1) * dl + 1 for d, s, k, dl in zip(x.shape[2:], strides, kernel, dilations,
                                                                  strict=True)]
    y = np.zeros((x.shape[0], cout_g * g, *full), dtype=np.float32)
    cin_g = cin // g
    for gi in range(g):
        xs = x[:, gi * cin_g:(gi + 1) * cin_g]
        for kk in np.ndindex(*kernel):
            contrib = np.tensordot(xs, w[gi * cin_g:(gi + 1) * cin_g, :, *kk], axes=([1], [0]))  # (N, *D, Co)
            contrib = np.moveaxis(contrib, -1, 1)
            idx = tuple(slice(k * dl, k * dl + (d - 1) * s + 1, s)
                        for k, dl, d, s in zip(kk, dilations, x.shape[2:], strides, strict=True))
            y[(slice(None), slice(gi * cout_g, (gi + 1) * cout_g), *idx)] += contrib
    if output_shape is not None:
        want = [int(v) for v in np.atleast_1d(output_shape)][-nsp:]
    elif pad_type == "same":
        want = [d * s for d, s in zip(x.shape[2:], strides, strict=True)]
    else:
        want = None
    crops = []
    if pad_type == "custom" and pad is not None:
        p = [int(v) for v in np.atleast_1d(pad)]
        crops = [(p[2 * i], full[i] - p[2 * i + 1]) for i in range(nsp)]
    elif want is not None:
        for f, t in zip(full, want, strict=True):
            total = max(0, f - t)
            crops.append((total // 2, total // 2 + t))
    if crops:
        y = y[(slice(None), slice(None), *(slice(a, b) for a, b in crops))]
    if bias is not None:
        y = y + _f(bias).reshape(1, -1, *[1] * nsp)
    return y


# ----------------------------------------------------------------------------- resizing
def _grid(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """Sample positions of the 1-D grid ``[0, n_in - 1]`` (resize_bilinear's ``sampling_mode``)."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = np.full(1, (n_in - 1) / 2.0 if mode == "ALIGN_CORNERS" else 0.0)
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":
        g = i * (n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        spacing = n_in / n_out
        g = i * spacing + 0.5 * spacing - 0.5
    elif mode == "ASYMMETRIC":  # align_corners=False, half_pixel_centers=False (TF's legacy resize)
        g = i * n_in / n_out
    else:
        raise RuntimeFailure("Core ML reference evaluator: unknown resize sampling mode", got=mode,
                             expected=["STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS",
                                       "UNALIGN_CORNERS"])
    return np.clip(g, 0, n_in - 1)


def _linear_1d(x, axis: int, n_out: int, mode: str):
    n_in = x.shape[axis]
    g = _grid(n_in, n_out, mode)
    lo = np.floor(g).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (g - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    frac = frac.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def _bilinear(x, h: int, w: int, mode: str):
    x = _f(x)
    return _linear_1d(_linear_1d(x, x.ndim - 2, h, mode), x.ndim - 1, w, mode)


def _nearest(x, h: int, w: int, half_pixel: bool = False):
    x = np.asarray(x)

    def idx(n_in, n_out):
        i = np.arange(n_out, dtype=np.float64)
        pos = (i + 0.5) * n_in / n_out if half_pixel else i * n_in / n_out
        return np.minimum(np.floor(pos).astype(int), n_in - 1)

    x = np.take(x, idx(x.shape[-2], h), axis=x.ndim - 2)
    return np.take(x, idx(x.shape[-1], w), axis=x.ndim - 1)


def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True,
                      half_pixel_centers=None):
    """Scale the last two axes; the scale is recomputed from the output size (floor(in * scale))."""
    h = int(math.floor(np.shape(x)[-2] * float(scale_factor_height)))
    w = int(math.floor(np.shape(x)[-1] * float(scale_factor_width)))
    half = (not bool(align_corners)) if half_pixel_centers is None else bool(half_pixel_centers)
    mode = "ALIGN_CORNERS" if align_corners else ("UNALIGN_CORNERS" if half else "ASYMMETRIC")
    if align_corners and half:
        raise RuntimeFailure("Core ML reference evaluator: upsample_bilinear with align_corners and "
                             "half_pixel_centers both true is undefined")
    return _bilinear(x, h, w, mode)


def resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT"):
    return _bilinear(x, int(target_size_height), int(target_size_width), str(sampling_mode))


def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    h = int(math.floor(np.shape(x)[-2] * float(scale_factor_height)))
    w = int(math.floor(np.shape(x)[-1] * float(scale_factor_width)))
    return _nearest(x, h, w)


def resize_nearest_neighbor(x, target_size_height, target_size_width):
    return _nearest(x, int(target_size_height), int(target_size_width))


def resize(x, shape, resized_dims, interpolation_mode="LINEAR", sampling_mode="DEFAULT"):
    """iOS17 ``resize`` of the last ``resized_dims`` axes (2 here: H, W) to ``shape``'s last ones."""
    shape = [int(v) for v in np.atleast_1d(shape)]
    k = int(resized_dims)
    if k != 2:
        raise RuntimeFailure("Core ML reference evaluator: resize supports resized_dims=2 only", got=k)
    h, w = shape[-2] or np.shape(x)[-2], shape[-1] or np.shape(x)[-1]
    if interpolation_mode == "NEAREST_NEIGHBOR":
        return _nearest(x, h, w)
    return _bilinear(x, h, w, str(sampling_mode))


def _depth_to_space(x, block_size):
    x = np.asarray(x)
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)  # DCR order, as TF
    return y.reshape(n, c // (b * b), h * b, w * b)


def _space_to_depth(x, block_size):
    x = np.asarray(x)
    n, c, h, w = x.shape
    b = int(block_size)
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _pixel_shuffle(x, upscale_factor):
    x = np.asarray(x)
    n, c, h, w = x.shape
    r = int(upscale_factor)
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)  # CRD order, as PyTorch
    return y.reshape(n, c // (r * r), h * r, w * r)


def _crop(x, crop_height, crop_width):
    ch, cw = [int(v) for v in np.atleast_1d(crop_height)], [int(v) for v in np.atleast_1d(crop_width)]
    x = np.asarray(x)
    return x[..., ch[0]:x.shape[-2] - ch[1], cw[0]:x.shape[-1] - cw[1]]


def _space_to_batch(x, block_shape, paddings):
    x = np.asarray(x)
    bs = [int(v) for v in np.atleast_1d(block_shape)]
    p = np.asarray(paddings, dtype=int).reshape(-1, 2)
    x = np.pad(x, [(0, 0), (0, 0), *map(tuple, p)])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // bs[0], bs[0], w // bs[1], bs[1]).transpose(3, 5, 0, 1, 2, 4)
    return y.reshape(n * bs[0] * bs[1], c, h // bs[0], w // bs[1])


def _batch_to_space(x, block_shape, crops):
    x = np.asarray(x)
    bs = [int(v) for v in np.atleast_1d(block_shape)]
    cr = np.asarray(crops, dtype=int).reshape(-1, 2)
    nb, c, h, w = x.shape
    n = nb // (bs[0] * bs[1])
    y = x.reshape(bs[0], bs[1], n, c, h, w).transpose(2, 3, 4, 0, 5, 1).reshape(n, c, h * bs[0], w * bs[1])
    return y[:, :, cr[0, 0]:h * bs[0] - cr[0, 1], cr[1, 0]:w * bs[1] - cr[1, 1]]
