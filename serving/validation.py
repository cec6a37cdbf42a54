"""Checks on /predict input that depend on the settings, with messages that name the problem."""

from __future__ import annotations

from dataclasses import dataclass

from serving.settings import ServeSettings


class RequestProblem(Exception):
    """A request the server refuses: 4xx for its input, 503 (+ Retry-After) when not ready or overloaded."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


@dataclass(frozen=True)
class CheckedTexts:
    texts: list[str]
    truncated: list[bool] | None  # None unless the overlong policy is `truncate`


def check_texts(texts: list[str], settings: ServeSettings) -> CheckedTexts:
    """Refuse too many, empty, undecodable or (policy `reject`) over-long texts; truncate otherwise."""
    if not texts:
        raise RequestProblem(422, "texts is empty: send at least one text")
    if len(texts) > settings.max_texts:
        raise RequestProblem(
            422, f"too many texts: {len(texts)} sent, at most {settings.max_texts} allowed (SERVE_MAX_TEXTS)"
        )
    limit = settings.max_text_chars
    truncate = settings.overlong == "truncate"
    out: list[str] = []
    flags: list[bool] = []
    for i, text in enumerate(texts):
        if not text.strip():
            raise RequestProblem(422, f"texts[{i}] is empty or whitespace-only")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestProblem(
                422, f"texts[{i}] is not valid Unicode (it holds a lone surrogate)"
            ) from None
        if len(text) > limit:
            if not truncate:
                raise RequestProblem(
                    422,
                    f"texts[{i}] has {len(text)} characters, more than the limit of {limit} "
                    "(SERVE_MAX_TEXT_CHARS; SERVE_OVERLONG=truncate cuts instead)",
                )
            text = text[:limit]
            if not text.strip():
                raise RequestProblem(
                    422, f"texts[{i}] is whitespace-only within its first {limit} characters"
                )
            flags.append(True)
        else:
            flags.append(False)
        out.append(text)
    return CheckedTexts(out, flags if truncate else None)


def check_top_k(top_k: int | None, n_labels: int) -> None:
    if top_k is not None and top_k > n_labels:
        raise RequestProblem(422, f"top_k is {top_k} but the model has only {n_labels} emotions")
