"""Device placement: a rollout on the batched env never copies to the host step by step (CPU and CUDA), and
on a CUDA device the env, the pixel-wise algorithms, training and enhancement agree with the CPU.

The CUDA tests are skipped where torch sees no CUDA device (CI runs on CPUs); see the README for where
they last ran on a GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import PixelA2C, PixelPPO, load_default, load_policy
from agents.cli import train
from agents.inference import enhance
from rellie_env.batched import BatchedLowLightEnv
from rellie_env.images import to_float_rgb
from rellie_env.losses import image_loss
from rellie_env.vector import LowLightSB3VecEnv

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
HOST_COPIES = ("cpu", "numpy", "item", "tolist", "__float__", "__int__", "__bool__")


def host_copies_per_rollout(algo, device: str, steps: int, monkeypatch) -> int:
    """Calls that bring a tensor to the host (or test its value there) during one rollout of ``steps`` steps."""
    env = LowLightSB3VecEnv(2, device=device, seed=0, crop_size=32, max_steps=steps)
    kwargs = dict(batch_size=2) if algo is PixelPPO else {}
    model = algo(env=env, n_steps=steps, policy_kwargs=dict(width=8), seed=0, device=device, **kwargs)
    model.learn(2 * steps)  # warm-up: the first rollout also resets the env
    counting = [False]
    count = [0]
    for name in HOST_COPIES:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count[0] += counting[0]
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    collect = model.collect_rollouts

    def collect_counted(*args, **kwargs):
        counting[0] = True
        try:
            return collect(*args, **kwargs)
        finally:
            counting[0] = False

    monkeypatch.setattr(model, "collect_rollouts", collect_counted)
    model.learn(2 * steps, reset_num_timesteps=False)
    monkeypatch.undo()
    return count[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", [PixelA2C, PixelPPO])
def test_rollout_has_no_per_step_host_copy(algo, device, monkeypatch):
    # Host copies happen once per rollout (the episode's end, the logged mean), never once per step.
    short = host_copies_per_rollout(algo, device, 2, monkeypatch)
    long = host_copies_per_rollout(algo, device, 7, monkeypatch)
    assert long == short


@CUDA
@pytest.mark.parametrize("mode", ["paper", "head-delta"])
def test_batched_env_on_cuda_equals_cpu(mode):
    kw = dict(crop_size=32, max_steps=3, reward_mode=mode)
    cpu, gpu = BatchedLowLightEnv(4, "cpu", **kw), BatchedLowLightEnv(4, "cuda", **kw)
    torch.testing.assert_close(gpu.reset(seed=5).cpu(), cpu.reset(seed=5))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        actions = torch.randint(0, 27, (4, 3, 32, 32), generator=gen)
        obs_c, maps_c, trunc_c, info_c = cpu.step(actions)
        obs_g, maps_g, trunc_g, info_g = gpu.step(actions.cuda())
        assert obs_g.is_cuda and maps_g.is_cuda and info_g["reward"].is_cuda
        torch.testing.assert_close(obs_g.cpu(), obs_c, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(maps_g.cpu(), maps_c, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(info_g["reward"].cpu(), info_c["reward"], atol=1e-3, rtol=1e-4)
        assert list(trunc_g) == list(trunc_c)


@CUDA
@pytest.mark.parametrize("algo", [PixelA2C, PixelPPO])
def test_pixel_algorithms_train_on_cuda(algo):
    env = LowLightSB3VecEnv(2, device="cuda", seed=0, crop_size=32, max_steps=3, reward_mode="head-delta")
    kwargs = dict(batch_size=3) if algo is PixelPPO else {}
    model = algo(env=env, n_steps=3, policy_kwargs=dict(width=8, per_head=True), seed=0, device="cuda", **kwargs)
    assert model.rollout_buffer.observations.is_cuda and model.rollout_buffer.actions.is_cuda
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(12)
    params = list(model.policy.parameters())
    assert all(p.is_cuda and torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    assert len(model.ep_info_buffer) == 4


@CUDA
def test_train_cli_on_cuda_writes_a_model_that_loads_on_the_cpu(tmp_path):
    out = tmp_path / "run"
    argv = ["--device", "cuda", "--episodes", "3", "--batch", "2", "--crop", "32", "--eval-every", "1",
            "--no-progress", "--out", str(out)]
    assert train.main(argv) == 0
    policy = load_policy(out / "policy.pt")
    assert next(policy.parameters()).device.type == "cpu"
    assert (out / "learning_curve.png").stat().st_size > 0


@CUDA
@pytest.mark.parametrize("fast", [False, True])
def test_enhance_with_a_policy_on_cuda_matches_the_cpu(fast):
    from skimage import data

    image = to_float_rgb(data.coffee())[:200, :300] * 0.2
    on_cpu = enhance(load_default(), image, fast=fast)
    on_gpu = enhance(load_default(device="cuda"), image, fast=fast)
    # cuDNN's convolutions (TF32 on recent GPUs) round differently, so a near-tie may pick the other action
    # at a few pixels; the picture and its loss stay the same.
    differ = np.abs(on_gpu - on_cpu) > 1e-3
    assert differ.mean() < 0.01
    as_tensor = [torch.from_numpy(x).permute(2, 0, 1)[None] for x in (on_cpu, on_gpu, image)]
    loss_cpu, loss_gpu = (float(image_loss(x, as_tensor[2])) for x in as_tensor[:2])
    assert loss_gpu == pytest.approx(loss_cpu, abs=0.02)
