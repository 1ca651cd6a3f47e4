"""Experiment B (issue 9, lip sync): a phone head on the cached audio features, and a derived DiT cache whose audio
features are the head's phone posteriors (speaker-independent by construction) instead of the encoder's layers.

1. Fit on train-split windows of the DiT cache: `audio_features [25, 4, 128]` of frames f-c .. f+c -> `params.phone[f]`
   (linear at c = 0, and an MLP with context c); report frame accuracy on held-out windows (identities and voices not
   in training; also split by whether the held-out voice was heard in training) and the majority-class rate.
2. Speaker information: a linear voice classifier on train-split voices (fit on even clips, tested on odd clips)
   from the raw features and from the posteriors; lower = less of the voice reaches the DiT.
3. Mouth information: ridge R^2 of held-out mouth_open from raw features vs posteriors (same protocol as probe.py).
4. Write OUT (a cache folder, same index, same windows) with `audio_features [25, 1, P]` = posteriors of the chosen head.
   Train-split posteriors are cross-fitted by voice (`--folds K`: each train voice's posteriors come from a head fit
   on the other folds' voices), so the DiT trains on posteriors as noisy as those of a voice it never heard; a head
   fit on every train voice gives the held-out ones. Without it the head's train posteriors are one-hot and right
   (train accuracy 1.000) and a ridge fit on them reads held-out mouth_open worse than a constant (R^2 -0.14).

usage: phone_posteriors.py CACHE_DIR OUT_DIR [--context 2] [--epochs 40] [--folds 3]
"""
import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("cache")
parser.add_argument("out")
parser.add_argument("--context", type=int, default=2)
parser.add_argument("--epochs", type=int, default=40)
parser.add_argument("--hidden", type=int, default=256)
parser.add_argument("--folds", type=int, default=3)
args = parser.parse_args()
root, out = Path(args.cache), Path(args.out)
index = json.loads((root / "index.json").read_text())

feats, phones, mouth, held, voice, clip = [], [], [], [], [], []
for shard in index["shards"]:
    d = load_file(root / shard["file"])
    for w in shard["windows"]:
        k = w["key"]
        feats.append(d[f"{k}.audio_features"].flatten(1))
        phones.append(d[f"{k}.params.phone"])
        mouth.append(d[f"{k}.params.mouth_open"])
        held.append(w["split"] == "heldout")
        voice.append(w["voice"])
        clip.append(w["clip"])
A, Y, M = torch.stack(feats), torch.stack(phones), torch.stack(mouth)  # [W, 25, 512], [W, 25], [W, 25]
H = torch.tensor(held)
classes = int(Y.max()) + 1
train_voices = {v for v, h in zip(voice, held) if not h}
heard = torch.tensor([v in train_voices for v in voice])
mu, sd = A[~H].flatten(0, 1).mean(0), A[~H].flatten(0, 1).std(0) + 1e-6
print(f"windows {len(A)} ({int(H.sum())} held-out, {int((H & ~heard).sum())} of them with voices never heard), "
      f"{classes} phone classes")


def context_stack(a: torch.Tensor, c: int) -> torch.Tensor:
    """[W, T, D] -> [W, T, (2c + 1) D]: frames f-c .. f+c (edges repeated within the window)."""
    t = a.shape[1]
    idx = (torch.arange(t)[:, None] + torch.arange(-c, c + 1)[None]).clamp(0, t - 1)
    return a[:, idx].flatten(2)


def fit(c: int, hidden: int, rows: torch.Tensor | None = None) -> torch.nn.Module:
    """A phone head on the train windows in `rows` (default: all train windows), accuracy printed on all held-out."""
    rows = ~H if rows is None else rows
    x = context_stack((A - mu) / sd, c)
    d = x.shape[-1]
    torch.manual_seed(0)
    net = (torch.nn.Linear(d, classes) if hidden == 0 else
           torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(d, hidden), torch.nn.GELU(),
                               torch.nn.Dropout(0.2), torch.nn.Linear(hidden, classes)))
    xt, yt = x[rows].flatten(0, 1), Y[rows].flatten()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    for epoch in range(args.epochs):
        net.train()
        for b in torch.randperm(len(xt)).split(512):
            loss = torch.nn.functional.cross_entropy(net(xt[b]), yt[b], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(x).argmax(-1)
    ok = pred == Y
    print(f"head context {c} hidden {hidden}: train acc {ok[~H].float().mean():.3f}, held-out {ok[H].float().mean():.3f}"
          f" (heard voices {ok[H & heard].float().mean():.3f}, never-heard voices {ok[H & ~heard].float().mean():.3f})")
    return net


def posteriors(net: torch.nn.Module, c: int) -> torch.Tensor:
    with torch.no_grad():
        return net(context_stack((A - mu) / sd, c)).softmax(-1)  # [W, 25, P]


def ridge_r2(x: torch.Tensor, y: torch.Tensor, lam: float = 100.0) -> float:
    tr, te = ~H, H
    xm, xs = x[tr].flatten(0, 1).mean(0), x[tr].flatten(0, 1).std(0) + 1e-6
    x = (x - xm) / xs
    a, b = x[tr].flatten(0, 1), y[tr].flatten()
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ (b - b.mean()))
    pred, target = x[te].flatten(0, 1) @ w + b.mean(), y[te].flatten()
    return float(1 - ((pred - target) ** 2).mean() / ((target - target.mean()) ** 2).mean())


def voice_accuracy(x: torch.Tensor) -> float:
    """Linear voice ID from per-frame features: fit on even train clips, tested on odd train clips."""
    names = sorted(train_voices)
    label = torch.tensor([names.index(v) if v in train_voices else -1 for v in voice])
    odd = torch.tensor([int(c.rsplit("-", 1)[1]) % 2 == 1 for c in clip])
    fit_rows, test_rows = ~H & ~odd, ~H & odd
    xm, xs = x[fit_rows].flatten(0, 1).mean(0), x[fit_rows].flatten(0, 1).std(0) + 1e-6
    xn = (x - xm) / xs
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[-1], len(names))
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=1e-3)
    xf, yf = xn[fit_rows].flatten(0, 1), label[fit_rows][:, None].expand(-1, x.shape[1]).flatten()
    for _ in range(10):
        for b in torch.randperm(len(xf)).split(512):
            loss = torch.nn.functional.cross_entropy(lin(xf[b]), yf[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = lin(xn[test_rows].flatten(0, 1)).argmax(-1)
    truth = label[test_rows][:, None].expand(-1, x.shape[1]).flatten()
    return float((pred == truth).float().mean()), len(names)


majority = torch.bincount(Y[~H].flatten(), minlength=classes).argmax()
print(f"majority class rate: held-out {(Y[H] == majority).float().mean():.3f}")
linear = fit(0, 0)
mlp = fit(args.context, args.hidden)
post = posteriors(mlp, args.context)
print(f"mouth_open ridge R^2 held-out from posteriors of the all-voice head: {ridge_r2(post, M):.3f}")
names = sorted(train_voices)
fold = torch.tensor([names.index(v) % args.folds if v in train_voices else -1 for v in voice])
for k in range(args.folds):
    head = fit(args.context, args.hidden, rows=~H & (fold != k))
    inside = fold == k
    post[inside] = posteriors(head, args.context)[inside]
    acc = (post[inside].argmax(-1) == Y[inside]).float().mean()
    print(f"  fold {k}: {int(inside.sum())} train windows of unheard voices, accuracy {acc:.3f}")
raw_voice, voices = voice_accuracy(A)
post_voice, _ = voice_accuracy(post)
print(f"voice ID over {voices} train voices (chance {1 / voices:.3f}): raw features {raw_voice:.3f}, "
      f"posteriors {post_voice:.3f}")
print(f"mouth_open ridge R^2 held-out: raw features {ridge_r2(A, M):.3f}, posteriors {ridge_r2(post, M):.3f}, "
      f"posteriors of frames f-2..f+2 {ridge_r2(context_stack(post, 2), M):.3f}")

out.mkdir(parents=True, exist_ok=True)
(out / "shards").mkdir(exist_ok=True)
row = 0
for shard in index["shards"]:
    d = load_file(root / shard["file"])
    for w in shard["windows"]:
        d[f"{w['key']}.audio_features"] = post[row][:, None].contiguous()  # [25, 1, P]
        row += 1
    save_file(d, out / shard["file"])
derived = dict(index)
derived["fingerprint"] = hashlib.sha256((index["fingerprint"] + f"phone-posteriors-c{args.context}").encode()).hexdigest()
(out / "index.json").write_text(json.dumps(derived))
head = {f"head.{k}": v.contiguous() for k, v in mlp.state_dict().items()} | {"feature_mean": mu, "feature_std": sd}
save_file(head, out / "phone_head.safetensors", metadata={"context": str(args.context), "classes": str(classes)})
print(f"wrote {row} windows to {out}")
shutil.copy(__file__, out / "phone_posteriors.py")
