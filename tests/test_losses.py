"""Every non-reference loss against values computed by hand on tiny images."""
import math

import pytest
import torch

from rellie_env.curves import ActionSet, apply_curve, curve_step
from rellie_env.losses import (
    LossWeights,
    color_constancy_loss,
    color_ratio_loss,
    exposure_loss,
    image_loss,
    loss_map,
    loss_terms,
    smoothness_loss,
    smoothness_map,
    spatial_consistency_loss,
    weighted_sum,
)


def test_exposure_loss_by_hand():
    # 2 x 2 patches of size 2: patch means 0.1, 0.3, 0.5, 0.7 (grey); level 0.6
    x = torch.zeros(1, 3, 4, 4)
    for (i, j), v in zip([(0, 0), (0, 2), (2, 0), (2, 2)], [0.1, 0.3, 0.5, 0.7]):
        x[:, :, i : i + 2, j : j + 2] = v
    expected = ((0.1 - 0.6) ** 2 + (0.3 - 0.6) ** 2 + (0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 4
    assert exposure_loss(x, patch=2, level=0.6).item() == pytest.approx(expected, rel=1e-6)


def test_exposure_loss_averages_channels_and_keeps_images_apart():
    x = torch.stack([torch.full((3, 4, 4), 0.6), torch.tensor([0.0, 0.3, 0.9]).view(3, 1, 1).expand(3, 4, 4)])
    loss = exposure_loss(x, patch=4, level=0.6)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-12)
    assert loss[1].item() == pytest.approx((0.4 - 0.6) ** 2, rel=1e-5)


def test_color_constancy_by_hand():
    x = torch.tensor([0.2, 0.4, 0.7]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    d_rg, d_rb, d_gb = (0.2 - 0.4) ** 2, (0.2 - 0.7) ** 2, (0.7 - 0.4) ** 2
    expected = math.sqrt(d_rg**2 + d_rb**2 + d_gb**2)
    assert color_constancy_loss(x).item() == pytest.approx(expected, rel=1e-5)
    assert color_constancy_loss(torch.full((1, 3, 2, 2), 0.3)).item() == 0.0


def test_color_ratio_is_zero_for_uniform_scaling_and_finite_on_black():
    x = torch.rand(1, 3, 8, 8)
    assert color_ratio_loss(x, x).item() == 0.0
    black = torch.zeros(1, 3, 8, 8)
    assert torch.isfinite(color_ratio_loss(x, black)).all()
    # one pixel's red doubles: R/G and R/B change, G/B does not
    y = x.clone()
    y[0, 0, 0, 0] *= 2
    eps = 1e-3
    r, g, b = x[0, :, 0, 0] + eps
    r2 = y[0, 0, 0, 0] + eps
    expected = ((r2 / g - r / g).abs() + (r2 / b - r / b).abs()) / 3 / 64
    assert color_ratio_loss(y, x).item() == pytest.approx(expected.item(), rel=1e-4)


def test_spatial_consistency_by_hand():
    # block 1 so pooling is the identity; the loss is the mean over pixels of the summed squared change of
    # each pixel's difference to its 4 zero-padded neighbours.
    org = torch.zeros(1, 3, 1, 2)
    enh = torch.zeros(1, 3, 1, 2)
    enh[:, :, 0, 1] = 0.5
    # pixel 0: diff right changes 0 -> -0.5; pixel 1: left 0 -> 0.5, right/up/down 0 -> 0.5 (zero padding)
    expected = (0.25 + (0.25 + 0.25 + 0.25 + 0.25)) / 2
    assert spatial_consistency_loss(enh, org, block=1).item() == pytest.approx(expected)
    # A change of brightness everywhere alike changes only the differences at the border
    x = torch.rand(1, 3, 8, 8)
    assert spatial_consistency_loss(x, x).item() == 0.0


def test_smoothness_by_hand():
    alpha = torch.zeros(1, 3, 2, 3)
    alpha[0, 0, 1, :] = 1.0  # one channel: lower row 1 -> 3 vertical pairs differ by 1
    alpha[0, 1, :, 2] = 0.5  # another: last column 0.5 -> 2 horizontal pairs differ by 0.5
    h_tv, count_h = 3 * 1.0, (2 - 1) * 3
    w_tv, count_w = 2 * 0.25, 2 * (3 - 1)
    expected = 2 * (h_tv / count_h + w_tv / count_w)
    assert smoothness_loss(alpha).item() == pytest.approx(expected)
    assert smoothness_map(alpha).mean().item() == pytest.approx(expected)
    per_channel = smoothness_map(alpha, per_channel=True)
    assert per_channel.shape == (1, 3, 2, 3) and per_channel[0, 2].abs().max() == 0
    torch.testing.assert_close(per_channel.sum(1, keepdim=True), smoothness_map(alpha))


def test_loss_map_mean_matches_the_losses():
    torch.manual_seed(0)
    img, org, alpha = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    w = LossWeights()
    m = loss_map(img, org, alpha, w)
    assert m.shape == (2, 32, 32)
    total = weighted_sum(loss_terms(img, org, alpha, w), w)
    torch.testing.assert_close(m.mean((1, 2)), total, rtol=1e-5, atol=1e-5)


def test_image_loss_ignores_smoothness_and_weights_terms():
    img, org = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    w = LossWeights(spatial=2.0, exposure=3.0, color=5.0)
    expected = 2 * spatial_consistency_loss(img, org) + 3 * exposure_loss(img) + 5 * color_constancy_loss(img)
    torch.testing.assert_close(image_loss(img, org, w), expected)


def test_curve_and_action_set():
    s = ActionSet()
    values = s.alpha_values()
    assert values[0].item() == pytest.approx(-0.30) and values[-1].item() == pytest.approx(1.0)
    assert s.action_of(0.0) == 6
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(apply_curve(x, torch.tensor(1.0)), x + x * (1 - x))
    torch.testing.assert_close(curve_step(x, torch.tensor(1.0), 0.8), 0.8 * (x + x * (1 - x)) + 0.2 * x)
    a = torch.tensor([0.1, 0.5, 1.0]).view(3, 1, 1)
    c = s.couple(a)  # lead channel 2 (blue)
    torch.testing.assert_close(c.flatten(), torch.tensor([0.1 * 0.1 + 0.9, 0.1 * 0.5 + 0.9, 1.0]))
    assert ActionSet(lead_channel=None).couple(a) is a
    # couple_transpose is the adjoint of couple: <couple(a), u> = <a, couple_transpose(u)>
    g = torch.Generator().manual_seed(0)
    a, u = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    for lead in (0, 2, None):
        t = ActionSet(lead_channel=lead)
        torch.testing.assert_close((t.couple(a) * u).sum(), (a * t.couple_transpose(u)).sum())
    with pytest.raises(ValueError):
        ActionSet(n_actions=40)  # alpha would reach 1.65 and leave [0, 1]
