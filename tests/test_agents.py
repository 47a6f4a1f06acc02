"""The pixel-wise policy, distribution, buffer and algorithms; the released weights; checkpoints."""

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env

from agents import (
    FlattenActionMap,
    PixelA2C,
    PixelActorCriticPolicy,
    PixelCategoricalDistribution,
    PixelPPO,
    PixelRolloutBuffer,
    load_official_rellie,
    load_policy,
    save_weights,
)
from agents.baselines import best_constant_policy
from agents.checkpoints import save_model
from agents.inference import greedy_rollout
from agents.policies import color_context, most_likely
from rellie_env.curves import ActionSet
from rellie_env.env import LowLightEnv
from rellie_env.losses import image_loss
from rellie_env.vector import LowLightSB3VecEnv

from .conftest import reference_file, small_policy

SMALL = dict(crop_size=32, max_steps=3)


def test_distribution_matches_torch_categorical():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 27, 4, 5)
    dist = PixelCategoricalDistribution(27).proba_distribution(logits)
    ref = torch.distributions.Categorical(logits=logits.permute(0, 1, 3, 4, 2))
    actions = dist.sample()
    assert actions.shape == (2, 3, 4, 5) and actions.min() >= 0 and actions.max() < 27
    torch.testing.assert_close(dist.log_prob_map(actions)[:, 0], ref.log_prob(actions).sum(1))
    torch.testing.assert_close(dist.log_prob_map(actions, per_head=True), ref.log_prob(actions))
    torch.testing.assert_close(dist.entropy_map(), ref.entropy().sum(1))
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions).sum((1, 2, 3)))
    assert torch.equal(dist.mode(), logits.argmax(2))
    alphas = ActionSet().alpha_values()
    torch.testing.assert_close(dist.expected(alphas), (ref.probs * alphas).sum(-1))


def test_most_likely_action_in_either_layout():
    torch.manual_seed(0)
    logits = torch.randn(2, 81, 5, 7)
    expected = logits.view(2, 3, 27, 5, 7).argmax(2)
    for layout in (torch.contiguous_format, torch.channels_last):
        assert torch.equal(most_likely(logits.contiguous(memory_format=layout).view(2, 3, 27, 5, 7)), expected)


def test_sampling_follows_the_probabilities():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).view(1, 1, 3, 1, 1).expand(1, 1, 3, 100, 100)
    dist = PixelCategoricalDistribution(3).proba_distribution(logits)
    freq = torch.bincount(dist.sample().flatten(), minlength=3).float() / 10000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02, rtol=0)


def test_policy_is_the_released_network_and_fully_convolutional():
    env = LowLightEnv(crop_size=32)
    policy = PixelActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    assert sum(p.numel() for p in policy.parameters()) == 307_602
    obs = torch.rand(2, 3, 32, 32)
    actions, values, log_probs = policy(obs)
    assert actions.shape == (2, 3, 32, 32) and values.shape == (2, 1) and log_probs.shape == (2,)
    a, v, lp = policy.act_pixels(torch.rand(1, 3, 40, 56))  # any size
    assert a.shape == (1, 3, 40, 56) and a.dtype == torch.uint8 and v.shape == lp.shape == (1, 1, 40, 56)
    narrow = small_policy(width=16, trunk_dilations=(2, 3), branch_dilations=(2,))
    assert sum(p.numel() for p in narrow.parameters()) < 30_000


def test_init_alpha_gives_a_smooth_start():
    policy = small_policy(init_alpha=0.3, init_alpha_spread=0.1)
    with torch.no_grad():
        dist = policy.distribution(torch.rand(2, 3, 32, 32))
        mean_alpha = dist.expected(policy.alpha_values)
    assert abs(float(mean_alpha.mean()) - 0.3) < 0.05 and float(mean_alpha.std()) < 0.02
    assert (dist.mode() == ActionSet().action_of(0.3)).float().mean() > 0.95


def test_official_weights_reproduce_the_original():
    ref = np.load(reference_file("rellie_reference_astronaut.npz"))
    policy = load_official_rellie(reference_file("rellie_official_model.npz"))
    rgb = torch.from_numpy(ref["input_bgr_chw"][::-1].copy())[None]
    with torch.no_grad():
        probs = policy.distribution(rgb).probs[0].numpy()
        values = policy.value_map(rgb)[0, 0].numpy()
    expected = ref["probs_first_step"][::-1]  # BGR heads -> RGB heads
    diff = np.abs(probs - expected)
    # The released logits reach 8e4, where float32 rounds by ~5e-3, so the CPU's rounding moves a few near-tie
    # probabilities (8 on an Intel Xeon, 12 on an AMD EPYC, of 1.5 million; up to 1.1e-3); the rest agree to 1e-4.
    assert (diff > 1e-4).sum() <= 20 and diff.max() < 5e-3
    np.testing.assert_allclose(values, ref["value_first_step"][0], atol=1e-3, rtol=1e-5)
    env = LowLightEnv(crop_size=None, max_steps=6)
    obs, _ = env.reset(options={"image": rgb[0].numpy().transpose(1, 2, 0)})
    images = ref["images_bgr_chw"][:, ::-1]
    for t in range(6):
        with torch.no_grad():
            actions = policy.distribution(torch.from_numpy(obs)[None]).mode()[0].numpy()
        assert (actions != ref["actions_bgr"][t][::-1]).mean() < 1e-4  # argmax ties aside
        obs, *_ = env.step(actions)
        np.testing.assert_allclose(obs, images[t + 1], atol=1e-4)


def test_predict_takes_any_image_size_and_reproduces_the_reference_run():
    """The released weights (built for 70 x 70) through SB3's ``predict`` on the reference run's 160 x 120 image,
    step by step: the original code's six greedy steps."""
    ref = np.load(reference_file("rellie_reference_astronaut.npz"))
    policy = load_official_rellie(reference_file("rellie_official_model.npz"))
    assert policy.observation_space.shape == (3, 70, 70)
    env = LowLightEnv(crop_size=None, max_steps=6)
    obs, _ = env.reset(options={"image": ref["input_bgr_chw"][::-1].transpose(1, 2, 0)})
    images = ref["images_bgr_chw"][:, ::-1]
    for t in range(6):
        actions, state = policy.predict(obs, deterministic=True)
        assert actions.shape == (3, 120, 160) and state is None
        obs, *_ = env.step(actions)
        np.testing.assert_allclose(obs, images[t + 1], atol=1e-4)
    batch, _ = policy.predict(np.stack([obs, obs]), deterministic=True)
    assert batch.shape == (2, 3, 120, 160) and (batch[0] == batch[1]).all()


@pytest.mark.parametrize("kind", ["zip", "pt"])
def test_predict_forward_and_values_take_any_size_for_loaded_models(tmp_path, kind):
    env = LowLightSB3VecEnv(2, crop_size=32, max_steps=2)
    model = PixelA2C(env=env, n_steps=2, policy_kwargs=dict(width=8), seed=0)
    path = save_model(model, tmp_path / "m.zip") if kind == "zip" else save_weights(model.policy, tmp_path / "m.pt")
    for policy in (load_policy(path), PixelA2C.load(tmp_path / "m.zip").policy if kind == "zip" else load_policy(path)):
        obs = torch.rand(3, 3, 45, 61)
        actions, _ = policy.predict(obs.numpy())
        assert actions.shape == (3, 3, 45, 61) and actions.max() < 27
        with torch.no_grad():
            acts, values, log_probs = policy(obs)
            assert acts.shape == (3, 3, 45, 61) and values.shape == (3, 1) and log_probs.shape == (3,)
            values, log_probs, entropy = policy.evaluate_actions(obs, acts)
            assert values.shape == (3, 1) and log_probs.shape == (3,) and entropy.shape == (3,)
            assert policy.predict_values(obs).shape == (3, 1)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        policy.predict(np.zeros((4, 45, 61), np.float32))


def test_bad_official_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.npz"
    np.savez(bad, nothing=np.zeros(3))
    with pytest.raises(ValueError, match="model.npz"):
        load_official_rellie(bad)


@pytest.mark.parametrize("value_heads", [1, 3])
def test_buffer_returns_and_gae_per_pixel(value_heads):
    env = LowLightEnv(crop_size=16)
    buf = PixelRolloutBuffer(3, env.observation_space, env.action_space, "cpu", gae_lambda=1.0, gamma=0.5, n_envs=2)
    buf.value_heads = value_heads
    buf.reset()
    maps = (2, value_heads, 16, 16)
    rewards = [torch.full(maps, float(t + 1)) for t in range(3)]
    rewards[0][1, -1, 0, 0] = 10.0
    for t in range(3):
        buf.add(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16, dtype=torch.uint8), rewards[t],
                torch.tensor([1.0 if t == 0 else 0.0] * 2), torch.zeros(maps), torch.zeros(maps))
    buf.compute_returns_and_advantage(torch.full(maps, 100.0), torch.tensor([1.0, 1.0]))
    # Monte-Carlo returns with gamma 0.5, no bootstrap after the episode's end
    assert buf.returns[0, 0, 0, 5, 5].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3)
    assert buf.returns[0, 1, -1, 0, 0].item() == pytest.approx(10 + 0.5 * 2 + 0.25 * 3)
    if value_heads == 3:  # each head keeps its own returns
        assert buf.returns[0, 1, 0, 0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3)
    assert buf.returns[2, 0, 0, 0, 0].item() == pytest.approx(3.0)
    assert buf.actions.dtype == torch.uint8
    batches = list(buf.get(batch_size=4))
    assert [b.observations.shape[0] for b in batches] == [4, 2] and batches[0].advantages.shape == (4, *maps[1:])


@pytest.mark.parametrize("algo", [PixelA2C, PixelPPO])
@pytest.mark.parametrize("mode", ["paper", "pixel", "head-delta"])
def test_pixel_algorithms_train_on_the_batched_env(algo, mode):
    env = LowLightSB3VecEnv(2, seed=0, reward_mode=mode, **SMALL)
    kwargs = dict(batch_size=3) if algo is PixelPPO else {}
    per_head = mode == "head-delta"
    model = algo(env=env, n_steps=3, policy_kwargs=dict(width=8, per_head=per_head), seed=0, **kwargs)
    assert model.rollout_buffer.rewards.shape[2] == (3 if per_head else 1)  # one map per head, or per pixel
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(12)
    assert model.num_timesteps == 12
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    assert len(model.ep_info_buffer) == 4


def test_color_context_is_the_cast_whatever_the_exposure():
    grey = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(color_context(grey), torch.zeros(1, 3))
    image = torch.rand(2, 3, 8, 8) * 0.5 + 0.1
    torch.testing.assert_close(color_context(image * 0.4), color_context(image))  # exposure-free
    cast = color_context(image * torch.tensor([2.0, 1.0, 1.0]).view(1, 3, 1, 1)) - color_context(image)
    torch.testing.assert_close(cast, (torch.tensor([1.0, 0.0, 0.0]) - 1 / 3).expand(2, 3) * np.log(2.0))
    with_level = color_context(image, exposure=True)
    torch.testing.assert_close(with_level[:, :3], color_context(image))
    darker = color_context(image * 0.4, exposure=True) - with_level  # the level moves by log 0.4, the cast not
    level = torch.tensor([0.0, 0.0, 0.0, float(np.log(0.4))]).expand(2, 4)
    torch.testing.assert_close(darker[:, :4], level, atol=1e-5, rtol=0)
    assert (darker[:, 4:] < np.log(0.4) * 0.8).all()  # log-brightness drops too (a little less: the 1/255 floor)
    contrast = color_context(image ** 2, exposure=True) - with_level  # a power law stretches log-brightness:
    assert (contrast[:, 4] < contrast[:, 5]).all()  # the mean moves further than the highlights


def test_global_exposure_needs_global_color():
    with pytest.raises(ValueError, match="global_exposure needs global_color"):
        small_policy(global_exposure=True)


@pytest.mark.parametrize("global_exposure", [False, True])
def test_global_color_policy_sees_the_whole_image(global_exposure):
    """A tile acts on the colour (and brightness) of the whole image, given as context, not on its own."""
    torch.manual_seed(0)
    policy = small_policy(global_color=True, global_exposure=global_exposure, trunk_dilations=(2,),
                          branch_dilations=(2,)).eval()  # radius 6
    image = torch.rand(1, 3, 40, 40) * 0.5
    image[:, :2 if global_exposure else 1, :, 20:] *= 0.2  # the right half lacks red (and green)
    tile = image[:, :, :, :20]
    context = color_context(image, exposure=global_exposure)
    assert context.shape == (1, 6 if global_exposure else 3)
    with torch.no_grad():
        whole = policy.action_logits(image)[..., :14]  # columns more than 6 px from the tile's cut edge
        torch.testing.assert_close(policy.action_logits(tile, context)[..., :14], whole)
        assert not torch.allclose(policy.action_logits(tile)[..., :14], whole, atol=1e-3)


def test_per_head_policy_needs_per_head_rewards():
    env = LowLightSB3VecEnv(2, seed=0, reward_mode="pixel-delta", **SMALL)
    model = PixelA2C(env=env, n_steps=3, policy_kwargs=dict(width=8, per_head=True), seed=0)
    with pytest.raises(ValueError, match="head-delta"):
        model.learn(6)
    # per-head rewards for a policy with one value per pixel: summed into the pixel's reward
    env = LowLightSB3VecEnv(2, seed=0, reward_mode="head-delta", **SMALL)
    model = PixelA2C(env=env, n_steps=3, policy_kwargs=dict(width=8), seed=0)
    model.learn(6)
    assert model.rollout_buffer.rewards.shape == (3, 2, 1, *model.observation_space.shape[1:])


def test_final_credit_rewards_each_action_with_its_share_of_the_final_loss():
    from rellie_env.core import final_loss_shares

    env = LowLightSB3VecEnv(2, seed=0, reward_mode="head-delta", **SMALL)
    model = PixelA2C(env=env, n_steps=3, gamma=0.0, reward_scale=0.5, final_credit=True,
                     policy_kwargs=dict(width=8, per_head=True), seed=0)
    model.learn(6)
    buffer, config = model.rollout_buffer, env.batched.config
    expected = final_loss_shares(buffer.observations, buffer.actions, config.action_set, config.weights) * 0.5
    torch.testing.assert_close(buffer.rewards, expected)
    torch.testing.assert_close(buffer.returns, expected)  # gamma 0: each reward is its action's whole outcome
    with pytest.raises(ValueError, match="one episode"):
        PixelA2C(env=env, n_steps=2, gamma=0.0, final_credit=True, policy_kwargs=dict(width=8), seed=0).learn(4)


def test_pixel_a2c_reads_reward_maps_from_a_dummy_vec_env():
    venv = make_vec_env(lambda: LowLightEnv(reward_mode="pixel", **SMALL), n_envs=2, seed=0)
    model = PixelA2C(env=venv, n_steps=3, policy_kwargs=dict(width=8), seed=0)
    model.learn(6)
    rewards = model.rollout_buffer.rewards
    assert rewards.shape == (3, 2, 1, 32, 32) and rewards[0, 0].std() > 0  # per-pixel, not a broadcast scalar


def test_pixel_ppo_ratio_is_per_pixel_and_finite():
    """A whole-image ratio would sum 3*32*32 log-prob changes; the per-pixel ratio stays finite."""
    env = LowLightSB3VecEnv(2, seed=0, **SMALL)
    model = PixelPPO(env=env, n_steps=3, batch_size=6, n_epochs=3, learning_rate=5e-3,
                     policy_kwargs=dict(width=8), seed=0)
    model.learn(6)
    assert np.isfinite(model.logger.name_to_value["train/approx_kl"])
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


@pytest.mark.parametrize("algo", [A2C, PPO])
def test_stock_sb3_algorithms_through_the_flattened_action_map(algo):
    venv = make_vec_env(lambda: FlattenActionMap(LowLightEnv(**SMALL)), n_envs=2, seed=0)
    kwargs = dict(batch_size=6, n_epochs=1) if algo is PPO else {}
    model = algo(PixelActorCriticPolicy, venv, n_steps=3, policy_kwargs=dict(width=8), seed=0, **kwargs)
    model.learn(6)
    action, _ = model.predict(venv.reset()[0], deterministic=True)
    assert action.shape == (3 * 32 * 32,)


@pytest.mark.parametrize("reward_mode, policy_kwargs", [
    ("pixel-delta", dict(init_alpha=0.4)),
    ("head-delta", dict(per_head=True, global_color=True, global_exposure=True)),  # a value map per head, context
])
def test_checkpoints_round_trip_and_bad_files(tmp_path, reward_mode, policy_kwargs):
    env = LowLightSB3VecEnv(2, seed=0, reward_mode=reward_mode, **SMALL)
    model = PixelA2C(env=env, n_steps=3, policy_kwargs=dict(width=8, **policy_kwargs), seed=0)
    model.learn(6)
    obs = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        expected = model.policy.distribution(obs).probs
        values = model.policy.value_map(obs)
    for path in (save_model(model, tmp_path / "m.zip"), save_weights(model.policy, tmp_path / "p.pt")):
        loaded = load_policy(path)
        saved = (loaded.per_head, loaded.global_color, loaded.global_exposure)
        assert saved == (model.policy.per_head, model.policy.global_color, model.policy.global_exposure)
        with torch.no_grad():
            torch.testing.assert_close(loaded.distribution(obs).probs, expected)
            torch.testing.assert_close(loaded.value_map(obs), values)
    (tmp_path / "junk.pt").write_text("not a model")
    for bad in (tmp_path / "junk.pt", tmp_path / "missing.zip"):
        with pytest.raises(ValueError, match=bad.name):
            load_policy(bad)


def test_best_constant_policy_is_the_exhaustive_optimum():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 0.3
    action_set = ActionSet(n_actions=5, offset=1, scale=0.25)  # 125 triples: small enough to check by brute force
    triple, loss = best_constant_policy(images, steps=3, action_set=action_set)
    losses = {}
    for t in np.ndindex(5, 5, 5):
        x = images
        for _ in range(3):
            x, _ = action_set.step(x, torch.tensor(t, dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 32, 32))
        losses[t] = float(image_loss(x, images).mean())
    assert triple == min(losses, key=losses.get)
    assert loss == pytest.approx(losses[triple], rel=1e-4)
    uniform, uniform_loss = best_constant_policy(images, steps=3, action_set=action_set, per_channel=False)
    assert uniform[0] == uniform[1] == uniform[2] and uniform_loss >= loss


def test_best_constant_policy_over_photos_of_different_sizes():
    torch.manual_seed(1)
    photos = [torch.rand(1, 3, 32, 48) * 0.3, torch.rand(1, 3, 20, 28) * 0.5]  # one pooled, one not
    action_set = ActionSet(n_actions=5, offset=1, scale=0.25)
    triple, loss = best_constant_policy(photos, steps=2, action_set=action_set)

    def mean_loss(t):
        finals = []
        for x0 in photos:
            x = x0
            for _ in range(2):
                x, _ = action_set.step(x, torch.tensor(t, dtype=torch.uint8).view(1, 3, 1, 1).expand(x0.shape))
            finals.append(float(image_loss(x, x0).mean()))
        return sum(finals) / 2  # each photo weighs the same, whatever its size

    losses = {t: mean_loss(t) for t in np.ndindex(5, 5, 5)}
    assert triple == min(losses, key=losses.get)
    assert loss == pytest.approx(losses[triple], rel=1e-4)


def test_greedy_rollout_applies_the_mode():
    policy = small_policy(init_alpha=1.0, init_alpha_spread=0.05)
    images = torch.full((1, 3, 32, 32), 0.2)
    final, alphas = greedy_rollout(policy, images, steps=2)
    assert len(alphas) == 2 and torch.allclose(alphas[0], torch.ones_like(alphas[0]))
    x = images
    for _ in range(2):
        x = x + 0.8 * x * (1 - x)
    torch.testing.assert_close(final, x)


@pytest.mark.parametrize("algo", [PixelA2C, PixelPPO])
def test_bf16_autocast_trains_with_float32_losses(algo):
    env = LowLightSB3VecEnv(2, seed=0, **SMALL)
    kwargs = dict(batch_size=3) if algo is PixelPPO else {}
    model = algo(env=env, n_steps=3, policy_kwargs=dict(width=8), seed=0, bf16=True, **kwargs)
    model.learn(6)
    assert model.rollout_buffer.values.dtype == torch.float32 and model.rollout_buffer.log_probs.dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.policy.parameters())
    with model._autocast():
        dist = model.policy.distribution(torch.rand(1, 3, 32, 32))
    assert dist.log_probs.dtype == torch.float32


def test_the_action_set_travels_with_the_policy(tmp_path):
    """A policy trained without channel coupling enhances without it after saving and loading."""
    from agents.inference import enhance

    uncoupled = {"lead_channel": None}
    policy = small_policy(init_alpha=[1.0, 0.0, 0.0], init_alpha_spread=0.05, action_set=uncoupled)
    loaded = load_policy(save_weights(policy, tmp_path / "p.pt"))
    assert loaded.action_set == ActionSet(lead_channel=None) and loaded.action_set == policy.action_set
    image = torch.tensor([0.3, 0.25, 0.2]).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
    final, _ = greedy_rollout(loaded, image, steps=1)
    # red brightens with alpha 1; green and blue keep alpha 0 (with the released coupling they would follow blue)
    assert final[0, 0].mean() > 0.4 and torch.allclose(final[0, 1:], image[0, 1:])
    out = enhance(loaded, image[0].permute(1, 2, 0).numpy(), steps=1)
    np.testing.assert_allclose(out, final[0].permute(1, 2, 0).numpy(), atol=1e-6)


def held_aside_crops():
    from agents.evaluation import ValidationCrops

    return ValidationCrops.of("builtin:test", 8, 128, fit=True)  # photos the models never saw, darkened


def test_the_shipped_model_beats_gamma_on_photos_it_never_saw():
    from agents import load_default
    from agents.baselines import gamma_correction
    from agents.checkpoints import DEFAULT_MODEL
    from rellie_env.images import stack_nchw, to_hwc
    from rellie_env.metrics import psnr

    assert DEFAULT_MODEL.stat().st_size <= 2 * 2**20
    crops = held_aside_crops()
    ours, _ = crops.score(load_default())
    gamma = stack_nchw([gamma_correction(to_hwc(x[None])) for x in crops.images])
    assert ours > float(psnr(gamma, crops.targets).mean()) + 1.5  # measured: 21.3 against 19.0 dB


def test_the_shipped_exposure_model_follows_the_target():
    from agents import load_default

    policy = load_default(exposure_control=True)
    lo, hi = policy.exposure_range
    images = held_aside_crops().images
    brightness = [float(greedy_rollout(policy, images, 6, exposure=e)[0].mean()) for e in (lo, (lo + hi) / 2, hi)]
    assert brightness[0] < brightness[1] < brightness[2], brightness
