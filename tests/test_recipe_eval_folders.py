"""The recipe's `evaluate` step reruns (changed bundle or limit) without sweeping away what the other evaluation
steps keep in `RUN/eval/` (the VAE ceiling, the teacher's metrics): only its own videos are cleared."""

import json

from echotorrent_core import pipeline
from echotorrent_core.metrics import sync_expert
from echotorrent_core.random_bundle import write_random_bundle
from echotorrent_core.recipes import default_model, evaluation
from echotorrent_core.recipes.runner import RecipeRun


def test_a_rerun_evaluate_keeps_the_other_evaluations(tmp_path, monkeypatch) -> None:
    run = RecipeRun(tmp_path / "run")
    bundle = write_random_bundle(run.root / "bundle")
    for name in ("data", "drift"):
        (run.root / name).mkdir()
        (run.root / name / "index.json").write_text("{}")
    expert = run.root / "expert.safetensors"
    expert.write_bytes(b"expert")
    calls = []

    def fake_evaluate(model, folder, data, drift, out, expert_model, limit):
        calls.append(limit)
        assert not (out / "heldout" / "old.mp4").exists()  # the previous run's videos are cleared first
        (out / "heldout").mkdir(parents=True, exist_ok=True)
        (out / "heldout" / "old.mp4").write_bytes(b"video")
        return {"limit": limit}

    monkeypatch.setattr(evaluation, "evaluate_bundle", fake_evaluate)
    monkeypatch.setattr(pipeline, "load_bundle", lambda *paths: None)
    monkeypatch.setattr(sync_expert, "load_sync_expert", lambda path: None)
    default_model._evaluate_step(run, bundle, expert, None, 1)
    kept = {"vae_metrics.json": "ceiling", "teacher_metrics.json": "teacher"}
    for name, text in kept.items():
        (run.root / "eval" / name).write_text(text)
    metrics = default_model._evaluate_step(run, bundle, expert, 3, 1)
    assert calls == [None, 3] and json.loads(metrics.read_text()) == {"limit": 3}
    assert {name: (run.root / "eval" / name).read_text() for name in kept} == kept
