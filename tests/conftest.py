"""Test-suite wiring shared by every test directory."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


class RepoRootIsNotAPackage:
    """Collects the repository root as a plain directory.

    The root `__init__.py` is the ComfyUI entry point and imports `comfy_api`; pytest would otherwise collect the
    root as a package and import that file before every test.
    """

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Dir | None:
        if path == REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config: pytest.Config) -> None:
    if (REPO_ROOT / "tests" / "__init__.py").exists():
        raise pytest.UsageError("tests/__init__.py must not exist: it makes pytest import the root ComfyUI entry point")
    config.pluginmanager.register(RepoRootIsNotAPackage(), "echotorrent-repo-root-is-not-a-package")
