"""Errors the local runner reports to the user (bad input exits 2 before anything runs)."""

from __future__ import annotations


class WorkflowError(Exception):
    """The workflow, its parameters or the command line are invalid: a clear message, exit 2."""


class UnsupportedFeature(WorkflowError):
    """The workflow uses an Argo feature this local runner does not execute."""
