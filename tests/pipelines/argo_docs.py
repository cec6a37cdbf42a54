"""Helpers to look into compiled Argo documents (dicts)."""

from __future__ import annotations


def tasks_of(doc: dict) -> dict[str, dict]:
    main = next(t for t in doc["spec"]["templates"] if t["name"] == doc["spec"]["entrypoint"])
    return {task["name"]: task for task in main["dag"]["tasks"]}


def templates_of(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}
