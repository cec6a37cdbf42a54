"""dvc-fetch step: one dataset version out of the DVC data registry, verified and validated."""

from steps.dvc_fetch.contract import FetchInput, FetchResult
from steps.dvc_fetch.core import fetch

__all__ = ["FetchInput", "FetchResult", "fetch"]
