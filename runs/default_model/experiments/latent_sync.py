"""Latent lip-sync probe of an audio-conditioned DiT, independent of the VAE decoder and the sync expert.
A ridge readout latent frame -> its mean SynthTalk `mouth_open` is fit on the ground-truth latents of the train
windows (never on generated ones); on held-out windows the DiT generates latent frames 1..6 (one-step x0 predictions
from t = 950 / 750, and 20-step Euler sampling, with and without audio CFG) from the same noise with the window's
audio, with another window's audio (shuffled control) and with the null audio; the readout of what it generated
is correlated with the true mouth opening of the window: within each window (mean of per-window Pearson r over its
6 latents: lip sync, not identity) and pooled. A DIT given as `student:PATH` is a causal student: it streams the 6
latents as it does at inference (`training.rollout`, two chunks of 3 after the window's portrait latent, its
`student_stream.json` settings, no CFG), from the same seed with each of the three audios.
usage: latent_sync.py CACHE DIT [DIT ...]"""
import sys
from pathlib import Path

import torch

from echotorrent_core import flow
from echotorrent_core.checkpoints.loaders import load_dit
from echotorrent_core.data.cache_dataset import CachedWindows
from echotorrent_core.models.attention import Bidirectional
from echotorrent_core.training.rollout import rollout
from echotorrent_core.training.stages.avatar_batch import conditioning
from echotorrent_core.training.stages.refiner_pairs import student_stream_settings
from echotorrent_core.training.stages.teacher_objective import reference_frame_timesteps

torch.set_num_threads(int(__import__("os").environ.get("PROBE_THREADS", "1")))
LATENTS, COUNT = 6, 48


def mouth_per_latent(mouth: torch.Tensor) -> torch.Tensor:
    return torch.stack([mouth[4 * j - 3:4 * j + 1].mean() for j in range(1, LATENTS + 1)])


def load(split: str):
    windows = CachedWindows(Path(sys.argv[1]), split=split)
    items = [windows[i] for i in range(len(windows))]
    z = torch.stack([it["latents"][:, :1 + LATENTS] for it in items])
    audio = torch.stack([it["audio_features"][1:1 + 4 * LATENTS] for it in items])
    mouth = torch.stack([mouth_per_latent(it["params"]["mouth_open"]) for it in items])
    return z, audio, mouth


train_z, _, train_mouth = load("train")
x = train_z[:, :, 1:].permute(0, 2, 1, 3, 4).flatten(0, 1).flatten(1)
mean, std = x.mean(0), x.std(0) + 1e-6
x = (x - mean) / std
y = train_mouth.flatten()
w = torch.linalg.solve(x.T @ x + 1e4 * torch.eye(x.shape[1]), x.T @ (y - y.mean()))
readout = lambda z: (((z[:, :, 1:].permute(0, 2, 1, 3, 4).flatten(2) - mean) / std) @ w + y.mean())  # [B, 6]

z, audio, mouth = load("heldout")
pick = torch.linspace(0, len(z) - 1, COUNT).long()
z, audio, mouth = z[pick], audio[pick], mouth[pick]
shuffled = audio.roll(COUNT // 2, 0)


def scores(pred: torch.Tensor) -> str:
    p, m = pred - pred.mean(1, keepdim=True), mouth - mouth.mean(1, keepdim=True)
    within = ((p * m).sum(1) / (p.norm(dim=1) * m.norm(dim=1) + 1e-8)).mean()
    pooled = torch.corrcoef(torch.stack([pred.flatten(), mouth.flatten()]))[0, 1]
    return f"within r {within:+.3f}, pooled r {pooled:+.3f}"


print(f"ground-truth latents (readout ceiling): {scores(readout(z))}")
noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
noise[:, :, 0] = 0.0


def velocity(model, x_t, t, batch_audio):
    batch = {"latents": z, "audio": batch_audio}
    cond = conditioning(model, batch, range(1 + LATENTS))
    return model(x_t, frame_t(t), cond, attention=Bidirectional())


def guided(model, x_t, t, batch_audio, scale):
    v = velocity(model, x_t, t, batch_audio)
    if scale == 1.0:
        return v
    null = velocity(model, x_t, t, torch.zeros_like(batch_audio))
    return null + scale * (v - null)


def frame_t(t):
    return reference_frame_timesteps(torch.full((COUNT,), float(t)), 1 + LATENTS)


def student_scores(path: str) -> None:
    model = load_dit(path, dtype=torch.float32)[0].eval()
    settings = student_stream_settings(path, None)
    print(f"student {path}")
    for name, a in (("audio", audio), ("shuffled", shuffled), ("null", torch.zeros_like(audio))):
        result = rollout(model, z[:, :, :1], a, settings, LATENTS // settings.chunk_frames,
                         generator=torch.Generator().manual_seed(0))
        streamed = torch.cat([z[:, :, :1], result.latents.to(z)], dim=2)
        print(f"  {name:9s} streamed: " + scores(readout(streamed)))


with torch.no_grad():
    for path in sys.argv[2:]:
        if path.startswith("student:"):
            student_scores(path.removeprefix("student:"))
            continue
        model = load_dit(path, dtype=torch.float32)[0].eval()
        print(path)
        for name, a in (("audio", audio), ("shuffled", shuffled), ("null", torch.zeros_like(audio))):
            row = []
            for t in (950.0, 750.0):
                x_t = flow.add_noise(z, noise, frame_t(t))
                row.append(f"x0 at t {t:.0f}: " + scores(readout(flow.x0_from_velocity(x_t, velocity(model, x_t, t, a),
                                                                                      frame_t(t)))))
            for scale in ((1.0, 4.0) if name != "null" else (1.0,)):
                steps = flow.many_step_timesteps(20, 5.0).tolist() + [0.0]
                x_t = flow.add_noise(z, noise, frame_t(steps[0]))
                for t, t_next in zip(steps[:-1], steps[1:]):
                    v = guided(model, x_t, t, a, scale)
                    x_t = flow.euler_step(x_t, v, frame_t(t), frame_t(t_next))
                    x_t[:, :, 0] = z[:, :, 0]
                row.append(f"20 steps cfg {scale:g}: " + scores(readout(x_t)))
            print(f"  {name:9s} " + "; ".join(row))
