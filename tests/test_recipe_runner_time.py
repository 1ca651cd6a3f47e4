"""A step's recorded wall time sums its attempts under one key only: time spent under another config (a changed
key, with or without a stage folder) is never carried into the new record."""

import json

import pytest

from echotorrent_core.recipes.runner import RecipeRun


def _fail() -> list:
    raise KeyboardInterrupt


def test_time_of_an_attempt_under_another_key_is_not_carried(tmp_path) -> None:
    run = RecipeRun(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run.step("evaluate", "old", _fail)
    run._update(lambda s: s["attempts"]["evaluate"].__setitem__("seconds", 500.0))  # a long interrupted attempt
    out = tmp_path / "metrics.json"
    out.write_text("{}")
    record = run.step("evaluate", "new", lambda: [out])
    assert record["seconds"] < 5.0
    assert json.loads(run.state_path.read_text())["steps"]["evaluate"]["key"] == "new"


def test_time_of_an_interrupted_attempt_under_the_same_key_is_summed(tmp_path) -> None:
    run = RecipeRun(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run.step("evaluate", "same", _fail)
    run._update(lambda s: s["attempts"]["evaluate"].__setitem__("seconds", 500.0))
    out = tmp_path / "metrics.json"
    out.write_text("{}")
    assert 500.0 <= run.step("evaluate", "same", lambda: [out])["seconds"] < 505.0
