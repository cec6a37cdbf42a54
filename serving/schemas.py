"""Request and response bodies of the inference API (kept apart from the route logic).

Types are strict: a number is not a text and "3" is not a `top_k`. Limits that depend on the
settings (how many texts, how long) are checked in `serving.validation` so the messages can name
the setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["I love this!", "This makes me angry"]}]},
    )

    texts: list[StrictStr] = Field(
        min_length=1, description="Texts to classify (non-empty, not whitespace-only)."
    )
    top_k: StrictInt | None = Field(
        default=None, ge=1, description="Also return the k most likely emotions with their scores."
    )
    all_scores: StrictBool = Field(default=False, description="Also return the score of every emotion.")


class Prediction(BaseModel):
    text: str
    emotion: str
    confidence: float
    scores: dict[str, float] | None = Field(
        default=None, description="Emotion -> probability, most likely first (with top_k or all_scores)."
    )
    truncated: bool | None = Field(
        default=None, description="Present when SERVE_OVERLONG=truncate: whether this text was cut."
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_uri: str
    model_version: str


class ServiceInfo(BaseModel):
    service: str
    version: str
    ready: bool
    model_uri: str
    docs: str
    endpoints: list[str]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    status: str = Field(description="loading, ready or failed")
    reason: str | None = None
    model_version: str | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_uri: str
    model_version: str
    run_id: str | None
    labels: dict[str, str]
    data_version: str | None
    lineage: dict[str, str]
    backend: str = Field(
        description="the backend actually serving (onnx when a static export had no calibration texts)"
    )
    serving_artifact: str | None = Field(
        default=None,
        description="where the ONNX graph came from: the registered artifact, or exported at start-up",
    )
    load_seconds: float | None = Field(default=None, description="model resolve + load time at start-up")


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict] | None = None
