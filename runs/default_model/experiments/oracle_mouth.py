"""Experiment D (issue 9, lip sync): can the teacher draw a mouth that follows its conditioning at all? A derived
DiT cache whose audio features are SynthTalk's ground-truth mouth tracks of the same frames (mouth_open,
mouth_width, mouth_round, teeth; standardised over the train split) instead of the audio encoder's layers, so the
audio path carries exactly what the mouth shows and nothing that names the clip. A teacher that does not follow this
oracle will not follow speech either; one that does splits the problem into audio -> mouth tracks and tracks -> video.
usage: oracle_mouth.py CACHE_DIR OUT_DIR"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TRACKS = ("mouth_open", "mouth_width", "mouth_round", "teeth")
root, out = Path(sys.argv[1]), Path(sys.argv[2])
index = json.loads((root / "index.json").read_text())
train = torch.cat([torch.stack([load_file(root / s["file"])[f"{w['key']}.params.{t}"].float() for t in TRACKS], -1)
                   for s in index["shards"] for w in s["windows"] if w["split"] == "train"])  # [rows, 4]
mean, std = train.mean(0), train.std(0) + 1e-6
print(f"train rows {len(train)}; track mean {mean.tolist()}, std {std.tolist()}")
(out / "shards").mkdir(parents=True, exist_ok=True)
count = 0
for shard in index["shards"]:
    d = load_file(root / shard["file"])
    for w in shard["windows"]:
        tracks = torch.stack([d[f"{w['key']}.params.{t}"].float() for t in TRACKS], -1)  # [25, 4]
        d[f"{w['key']}.audio_features"] = ((tracks - mean) / std)[:, None].to(d[f"{w['key']}.audio_features"].dtype)
        count += 1
    save_file(d, out / shard["file"])
derived = dict(index)
derived["fingerprint"] = hashlib.sha256((index["fingerprint"] + "oracle-mouth-tracks").encode()).hexdigest()
(out / "index.json").write_text(json.dumps(derived))
shutil.copy(__file__, out / "oracle_mouth.py")
print(f"wrote {count} windows to {out}")
