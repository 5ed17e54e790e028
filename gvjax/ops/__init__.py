"""Pure array functions of StyleGAN2 and StyleGAN3, shared by the generators, the warps and the render step."""

from gvjax.ops.bias_act import ACTIVATION_GAINS, bias_act
from gvjax.ops.conv import (
    MODCONV_FORMS,
    arrange_kernel,
    conv2d,
    conv2d_resample,
    conv2d_resample_arranged,
    demodulation_coefficients,
    modulated_conv2d,
)
from gvjax.ops.filtered_lrelu import design_lowpass_filter, filtered_lrelu
from gvjax.ops.fir import downsample2d, setup_filter, upfirdn2d, upsample2d, widen
from gvjax.ops.fourier import fourier_features, learned_transform, make_transform
from gvjax.ops.linear import fully_connected, normal_init, normalize_2nd_moment
from gvjax.ops.winograd import winograd_conv3x3, winograd_kernel

__all__ = [
    "ACTIVATION_GAINS",
    "MODCONV_FORMS",
    "arrange_kernel",
    "bias_act",
    "conv2d",
    "conv2d_resample",
    "conv2d_resample_arranged",
    "demodulation_coefficients",
    "design_lowpass_filter",
    "downsample2d",
    "filtered_lrelu",
    "fourier_features",
    "fully_connected",
    "learned_transform",
    "make_transform",
    "widen",
    "modulated_conv2d",
    "normal_init",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "winograd_conv3x3",
    "winograd_kernel",
]
