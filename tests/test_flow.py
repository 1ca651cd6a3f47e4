import pytest
import torch

from echotorrent_core import flow


def _latents(batch: int = 2, frames: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, frames, 2, 3, generator=torch.Generator().manual_seed(seed))


def test_shift_sigma_known_values_and_fixed_ends():
    sigmas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    shifted = flow.shift_sigma(sigmas, 5.0)
    torch.testing.assert_close(shifted, torch.tensor([0.0, 0.625, 5 / 6, 0.9375, 1.0]))
    assert flow.shift_sigma(0.5, 1.0) == 0.5


def test_shift_sigma_rejects_non_positive_shift():
    with pytest.raises(ValueError, match="positive shift"):
        flow.shift_sigma(0.5, 0.0)


def test_few_step_timesteps_default_is_warped_self_forcing_list():
    torch.testing.assert_close(flow.few_step_timesteps(), torch.tensor([1000.0, 937.5, 2500 / 3, 625.0]))


def test_few_step_timesteps_for_any_step_count():
    torch.testing.assert_close(flow.few_step_timesteps_for(2, shift=1.0), torch.tensor([1000.0, 500.0]))
    torch.testing.assert_close(flow.few_step_timesteps_for(4), flow.few_step_timesteps())
    torch.testing.assert_close(flow.few_step_timesteps_for(1), torch.tensor([1000.0]))


@pytest.mark.parametrize("base", [(), (1000, 1000), (500, 750), (1000, 0), (1200,)])
def test_few_step_timesteps_rejects_bad_base(base):
    with pytest.raises(ValueError, match="base timestep"):
        flow.few_step_timesteps(base)


def test_few_step_timesteps_for_rejects_zero_steps():
    with pytest.raises(ValueError, match="at least one"):
        flow.few_step_timesteps_for(0)


def test_many_step_sigmas_follow_wan_unipc_endpoints():
    sigmas = flow.many_step_sigmas(4, shift=1.0)
    torch.testing.assert_close(sigmas, torch.tensor([0.999, 0.74925, 0.4995, 0.24975, 0.0]))
    shifted = flow.many_step_sigmas(50, shift=5.0)
    assert shifted.shape == (51,)
    assert shifted[-1] == 0 and bool((shifted[1:] < shifted[:-1]).all())
    torch.testing.assert_close(shifted[0], torch.tensor(5 * 0.999 / (1 + 4 * 0.999)))
    torch.testing.assert_close(flow.many_step_timesteps(50, shift=5.0), shifted[:-1] * 1000)


def test_sigma_grid_shapes():
    x = _latents(batch=2, frames=3)
    assert flow.sigma_grid(500, x).shape == (1, 1, 1, 1, 1)
    assert flow.sigma_grid(torch.tensor([100.0, 900.0]), x).shape == (2, 1, 1, 1, 1)
    per_frame = flow.sigma_grid(torch.tensor([[100.0, 200.0, 300.0]] * 2), x)
    assert per_frame.shape == (2, 1, 3, 1, 1)
    torch.testing.assert_close(per_frame[1, 0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("t", [torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 3, 1)])
def test_sigma_grid_rejects_mismatched_timesteps(t):
    with pytest.raises(ValueError, match="timesteps of shape"):
        flow.sigma_grid(t, _latents(batch=2, frames=3))


def test_sigma_grid_rejects_non_video_latents():
    with pytest.raises(ValueError, match=r"\[B, C, F, H, W\]"):
        flow.sigma_grid(1.0, torch.zeros(2, 4, 8, 8))


def test_add_noise_per_frame_endpoints():
    x0, noise = _latents(seed=1), _latents(seed=2)
    t = torch.tensor([[0.0, 1000.0, 250.0], [1000.0, 0.0, 500.0]])
    x_t = flow.add_noise(x0, noise, t)
    torch.testing.assert_close(x_t[0, :, 0], x0[0, :, 0])
    torch.testing.assert_close(x_t[0, :, 1], noise[0, :, 1])
    torch.testing.assert_close(x_t[0, :, 2], 0.75 * x0[0, :, 2] + 0.25 * noise[0, :, 2])
    torch.testing.assert_close(x_t[1, :, 2], 0.5 * x0[1, :, 2] + 0.5 * noise[1, :, 2])


def test_add_noise_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        flow.add_noise(_latents(frames=3), _latents(frames=2), 500)


def test_x0_velocity_noise_round_trip():
    x0, noise = _latents(seed=3), _latents(seed=4)
    t = torch.tensor([937.5, 250.0])
    x_t = flow.add_noise(x0, noise, t)
    v = noise - x0
    torch.testing.assert_close(flow.x0_from_velocity(x_t, v, t), x0)
    torch.testing.assert_close(flow.velocity_from_x0(x_t, x0, t), v)
    torch.testing.assert_close(flow.noise_from_x0_velocity(x0, v), noise)
    v_pred = _latents(seed=5)
    torch.testing.assert_close(flow.velocity_from_x0(x_t, flow.x0_from_velocity(x_t, v_pred, t), t), v_pred)


def test_velocity_from_x0_rejects_zero_timestep():
    x = _latents()
    with pytest.raises(ValueError, match="t = 0"):
        flow.velocity_from_x0(x, x, torch.tensor([0.0, 500.0]))


def test_conversions_keep_dtype():
    x0 = _latents().to(torch.bfloat16)
    assert flow.add_noise(x0, x0, 300).dtype == torch.bfloat16
    assert flow.euler_step(x0, x0, 300, 200).dtype == torch.bfloat16


def test_euler_along_true_straight_path_lands_on_x0():
    x0, noise = _latents(seed=6), _latents(seed=7)
    sigmas = flow.many_step_sigmas(7, shift=5.0)
    timesteps = sigmas * 1000
    x = flow.add_noise(x0, noise, timesteps[0])
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        x = flow.euler_step(x, noise - x0, t, t_next)
        torch.testing.assert_close(x, flow.add_noise(x0, noise, t_next))
    torch.testing.assert_close(x, x0)


def test_euler_step_per_frame_timesteps():
    x0, noise = _latents(seed=8), _latents(seed=9)
    t = torch.tensor([[1000.0, 600.0, 300.0]] * 2)
    t_next = torch.tensor([[600.0, 300.0, 0.0]] * 2)
    x_next = flow.euler_step(flow.add_noise(x0, noise, t), noise - x0, t, t_next)
    torch.testing.assert_close(x_next, flow.add_noise(x0, noise, t_next))


def test_few_step_transition_with_given_noise_and_generator():
    x0, noise = _latents(seed=10), _latents(seed=11)
    torch.testing.assert_close(flow.few_step_transition(x0, 625.0, noise=noise), flow.add_noise(x0, noise, 625.0))
    torch.testing.assert_close(flow.few_step_transition(x0, 0.0, noise=noise), x0)
    first = flow.few_step_transition(x0, 833.0, generator=torch.Generator().manual_seed(3))
    second = flow.few_step_transition(x0, 833.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, second)
    assert first.shape == x0.shape and not torch.allclose(first, x0)


def test_few_step_transition_rejects_noise_and_generator():
    x0 = _latents()
    with pytest.raises(ValueError, match="not both"):
        flow.few_step_transition(x0, 500.0, noise=x0, generator=torch.Generator())
