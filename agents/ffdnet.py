"""FFDNet colour denoiser (Zhang, Zuo & Zhang, TIP 2018) as ReLLIE runs it, and ReLLIE's gain-based noise map.

The network is Matias Tassano's PyTorch FFDNet (``an-ffdnet-pytorch``), as copied into ``GuoLanqing/ReLLIE``
(``models.py``, ``functions.py``): the image is split into its four 2x2 sub-images (``4 * 3`` channels at half
resolution), a noise-level map is put in front of them (``3`` more channels), a 12-layer DnCNN (96 channels,
BatchNorm, no biases) predicts the noise of the sub-images, which are reassembled to full size. The network
outputs the *noise*; the denoised image is ``clamp(x - net(x, sigma), 0, 1)``.
ReLLIE's change to the original: the noise map may vary per pixel and channel (``noise_sigma.view(N, C, H/2,
W/2)``) instead of one value per image; both are accepted here.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from agents.zero_dce import load_state_dict_file

CHANNELS = 3
FEATURES = 96
CONV_LAYERS = 12


class IntermediateDnCNN(nn.Module):
    """The DnCNN body of FFDNet; its ``itermediate_dncnn`` (sic) name matches the released weights' keys."""

    def __init__(self, input_features: int, middle_features: int, output_features: int, num_conv_layers: int):
        """:param input_features: channels in (noise map + sub-images).
        :param middle_features: channels of the hidden layers.
        :param output_features: channels out (noise of the sub-images).
        :param num_conv_layers: convolutions in all, first and last included.
        """
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)

        layers: list[nn.Module] = [conv(input_features, middle_features), nn.ReLU(inplace=True)]
        for _ in range(num_conv_layers - 2):
            layers += [conv(middle_features, middle_features), nn.BatchNorm2d(middle_features), nn.ReLU(inplace=True)]
        layers.append(conv(middle_features, output_features))
        self.itermediate_dncnn = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: ``(B, input_features, h, w)``. :return: ``(B, output_features, h, w)``."""
        return self.itermediate_dncnn(x)


class FFDNet(nn.Module):
    """FFDNet for RGB images (12 layers, 96 features), parameter names as in ``ffdnet_net_rgb.pth``."""

    def __init__(self) -> None:
        super().__init__()
        sub = 4 * CHANNELS
        self.intermediate_dncnn = IntermediateDnCNN(CHANNELS + sub, FEATURES, sub, CONV_LAYERS)

    def forward(self, x: torch.Tensor, noise_sigma: torch.Tensor) -> torch.Tensor:
        """Predict the noise of ``x`` (subtract it to denoise).

        :param x: ``(B, 3, H, W)`` in [0, 1], ``H`` and ``W`` even (see :func:`denoise_ffdnet` for odd sizes).
        :param noise_sigma: noise standard deviation on the [0, 1] scale (25/255 for sigma 25): one value per
            image ``(B,)``, or a map ``(B, 3, H/2, W/2)`` (or broadcastable to it) as ReLLIE passes.
        :return: the estimated noise, ``(B, 3, H, W)``.
        """
        b, c, h, w = x.shape
        if c != CHANNELS or h % 2 or w % 2:
            raise ValueError(f"FFDNet needs (B, 3, even H, even W) images, got {tuple(x.shape)}")
        if noise_sigma.dim() == 1:
            noise_sigma = noise_sigma.view(b, 1, 1, 1)
        noise_map = noise_sigma.to(x).expand(b, c, h // 2, w // 2)
        # pixel_unshuffle puts x[c, 2y+i, 2x+j] in channel 4c + 2i + j, the layout of the original's strided loop
        # (functions.concatenate_input_noise_map); pixel_shuffle is its inverse (UpSampleFeaturesFunction).
        features = torch.cat([noise_map, F.pixel_unshuffle(x, 2)], dim=1)
        return F.pixel_shuffle(self.intermediate_dncnn(features), 2)


def load_ffdnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> FFDNet:
    """FFDNet with released weights (e.g. ReLLIE's ``FFDNet_models/net_rgb.pth``), in eval mode on ``device``.

    :param path: a state-dict file; the ``module.`` prefix of a ``DataParallel`` save is stripped.
    :param device: where the model goes.
    :raises ValueError: naming the file when it is not a readable, compatible state dict.
    """
    return load_state_dict_file(FFDNet(), path, device)


def denoise_ffdnet(model: FFDNet, image: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Denoise RGB images of any size, as the original test scripts do.

    Odd heights/widths get their last row/column repeated (as ``test_ffdnet_ipol.py`` and ReLLIE's ``State_de``
    do), the padded output is clamped to [0, 1] and cropped back. Runs without autograd.

    :param model: an FFDNet (in eval mode, see :func:`load_ffdnet`).
    :param image: ``(B, 3, H, W)`` RGB in [0, 1].
    :param sigma: noise level on the [0, 1] scale: a number, ``(B,)``, or a map ``(B, 3, ceil(H/2), ceil(W/2))``
        such as :func:`gain_noise_sigma` returns.
    :return: the denoised images, ``(B, 3, H, W)`` in [0, 1].
    """
    b, _, h, w = image.shape
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.full((b,), float(sigma))
    with torch.no_grad():
        padded = F.pad(image, (0, w % 2, 0, h % 2), mode="replicate")
        out = torch.clamp(padded - model(padded, sigma.to(image)), 0.0, 1.0)
    return out[:, :, :h, :w]


def gain_noise_sigma(original: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
    """ReLLIE's noise-level map for its final FFDNet step: large where the enhancement brightened most.

    A literal port of ``State_de.step_de`` in ``GuoLanqing/ReLLIE`` (``State.py``, run by ``test.py`` at the last
    of the 6 test steps), per image ``i`` of the batch, on the 0..255 scale:

    1. ``low = 255 * original``, with values ``<= 2`` raised to ``3`` (``State_de.reset``; avoids dividing by 0);
    2. ``g = (255 * enhanced - low) / low``, the relative brightening (gain minus 1) of every pixel and channel;
    3. ``g = 2 * max(g) * (g - min(g)) / (max(g) - min(g))``, min and max over the whole image (all channels):
       a min-max rescale to ``[0, 2 max(g)]``;
    4. negative values (only when ``max(g) < 0``) set to 0, then ``/ 255`` to FFDNet's [0, 1] scale;
    5. subsampled ``[::2, ::2]``: the top-left pixel of each 2x2 block, one value per FFDNet sub-image pixel.

    Where ``max(g) == min(g)`` the original divides 0 by 0 (a NaN map, hence a NaN image); here such an image
    gets the constant ``max(2 max(g), 0) / 255``, the top of the range the rescale maps to.
    ReLLIE feeds its BGR state; the map is elementwise, so it follows the channel order of its inputs.

    :param original: ``(B, 3, H, W)`` low-light input in [0, 1], the image the episode started from.
    :param enhanced: ``(B, 3, H, W)`` its current enhancement in [0, 1].
    :return: noise map ``(B, 3, ceil(H/2), ceil(W/2))`` for :func:`denoise_ffdnet`.
    """
    low = original * 255
    low = torch.where(low <= 2, torch.full_like(low, 3.0), low)
    g = (enhanced * 255 - low) / low
    g_min = g.amin(dim=(1, 2, 3), keepdim=True)
    g_max = g.amax(dim=(1, 2, 3), keepdim=True)
    span = g_max - g_min
    flat = span == 0
    unit = torch.where(flat, torch.ones_like(g), (g - g_min) / torch.where(flat, torch.ones_like(span), span))
    sigma = (2 * g_max * unit).clamp_min(0) / 255
    return sigma[:, :, ::2, ::2]
