"""Linear probes on the DiT's training cache: how much of the ground-truth mouth opening (SynthTalk params) is
linearly readable (ridge, fit on train windows, R^2 on held-out windows) (a) from the audio features the DiT gets for
frame f, at offsets f + d, and (b) from the VAE latents of latent frame k (mean mouth_open over its 4 frames).
usage: probe.py CACHE_DIR (the DiT stages' preprocessing cache, RUN/avatar_data/avatar_cache)"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

torch.set_num_threads(1)
root = Path(sys.argv[1])
index = json.loads((root / "index.json").read_text())
feats, mouth, lat, lat_mouth, split_f, split_l = [], [], [], [], [], []
for shard in index["shards"]:
    d = load_file(root / shard["file"])
    for w in shard["windows"]:
        k = w["key"]
        heldout = w["split"] == "heldout"
        a, m = d[f"{k}.audio_features"].flatten(1), d[f"{k}.params.mouth_open"]
        feats.append(a); mouth.append(m); split_f.append(heldout)
        z = d[f"{k}.latents"]  # [16, 7, 16, 16]: latent 0 = frame 0, latent j >= 1 = frames 4j-3..4j
        for j in range(1, z.shape[1]):
            lat.append(z[:, j].flatten()); lat_mouth.append(m[4 * j - 3:4 * j + 1].mean()); split_l.append(heldout)


def ridge(x, y, held, lam):
    tr, te = ~held, held
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    x = (x - mu) / sd
    ym = y[tr].mean()
    a = x[tr]
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ (y[tr] - ym))
    pred = x[te] @ w + ym
    return 1 - ((pred - y[te]) ** 2).mean() / ((y[te] - y[te].mean()) ** 2).mean()


A, M = torch.stack(feats), torch.stack(mouth)  # [W, 25, 512], [W, 25]
held = torch.tensor(split_f)
print(f"windows {len(A)} ({int(held.sum())} held-out)")
for d in range(-4, 5):
    f = torch.arange(4, 21)
    x = A[:, f].flatten(0, 1)
    y = M[:, f + d].flatten()
    h = held[:, None].expand(-1, len(f)).flatten()
    print(f"audio features of frame f -> mouth_open[f{d:+d}]: held-out R^2 {ridge(x, y, h, 100.0):.3f}")
L, LM, hl = torch.stack(lat), torch.stack(lat_mouth), torch.tensor(split_l)
for lam in (100.0, 1000.0, 10000.0):
    print(f"latent frame -> its mean mouth_open (lambda {lam:g}): held-out R^2 {ridge(L, LM, hl, lam):.3f}")
