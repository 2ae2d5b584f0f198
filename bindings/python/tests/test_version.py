"""The installed package carries the Cargo workspace's version (one version, STYLE.md point 1)."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re

import coatcheck

WORKSPACE_MANIFEST = pathlib.Path(__file__).resolve().parents[3] / "Cargo.toml"


def workspace_version() -> str:
    text = WORKSPACE_MANIFEST.read_text(encoding="utf-8")
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
    assert match, f"no version in [workspace.package] of {WORKSPACE_MANIFEST}"
    return match.group(1)


def test_installed_distribution_has_the_workspace_version() -> None:
    assert importlib.metadata.version("coatcheck") == workspace_version()


def test_module_version_is_the_workspace_version() -> None:
    assert coatcheck.__version__ == workspace_version()
