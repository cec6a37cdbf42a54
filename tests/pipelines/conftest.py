"""Fixtures for the pipeline tests: the compiled documents, as the builders produce them."""

from __future__ import annotations

import pytest

from pipelines.emotion_hpo import build_template_run, build_workflow, build_workflow_template, to_manifest


@pytest.fixture(scope="session")
def workflow() -> dict:
    return to_manifest(build_workflow())


@pytest.fixture(scope="session")
def template() -> dict:
    return to_manifest(build_workflow_template())


@pytest.fixture(scope="session")
def template_run() -> dict:
    return to_manifest(build_template_run())
