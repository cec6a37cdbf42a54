"""A small evaluator for the expression languages Argo uses in a DAG.

- `when` (govaluate, after `{{...}}` substitution): ==, !=, <, <=, >, >=, &&, ||, !, parentheses,
  quoted strings, numbers, true/false; a bare word is a string (so `true == {{x}}` and
  `kuberay == in-pod` both work, as in Argo).
- `depends`: task names with `.Succeeded`-style suffixes combined with &&, || and ! (see `depends.py`).
- expr-lang (`{{=...}}`, `retryStrategy.expression`, ...) is `exprlang`, typed as Argo types it;
  this evaluator's `and`/`or`/`in [...]`/casts remain for callers of `evaluate_bool`.

Tokens are parsed by recursive descent; nothing is passed to Python's eval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.local_runner.errors import WorkflowError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>-?\d+(?:\.\d+)?(?![\w.-]))
      | (?P<op>&&|\|\||==|!=|<=|>=|=~|<|>|!|\(|\)|\[|\]|,)
      | (?P<word>[A-Za-z0-9_.:/@+-][A-Za-z0-9_.:/@+*%-]*)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in"}
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "asInt": lambda v: int(float(v)),
    "asFloat": float,
    "int": lambda v: int(float(v)),
    "float": float,
    "string": lambda v: _to_text(v),
}


@dataclass(frozen=True)
class _Tok:
    kind: str  # str | num | op | word
    text: str


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise WorkflowError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value in _WORD_OPS:
            tokens.append(_Tok("op", _WORD_OPS[value]))
        else:
            tokens.append(_Tok(kind, value))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _coerce_pair(left: Any, right: Any) -> tuple[Any, Any]:
    """Compare numbers as numbers and everything else as text (Argo substitutes strings)."""

    def as_number(v: Any) -> float | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return float(str(v))
        except ValueError:
            return None

    ln, rn = as_number(left), as_number(right)
    if ln is not None and rn is not None:
        return ln, rn
    return _to_text(left), _to_text(right)


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1"):
            return True
        if value.strip().lower() in ("false", "0", ""):
            return False
        raise WorkflowError(f"expected a boolean, got {value!r}")
    return bool(value)


class _Parser:
    """or -> and -> not -> comparison -> primary."""

    def __init__(self, text: str, resolve: Callable[[str], Any]):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.resolve = resolve

    def error(self, why: str) -> WorkflowError:
        return WorkflowError(f"invalid expression {self.text!r}: {why}")

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, op: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (op is not None and (tok.kind != "op" or tok.text != op)):
            raise self.error(f"expected {op or 'a value'}")
        self.i += 1
        return tok

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.text in ops

    def parse(self) -> Any:
        if not self.tokens:
            raise self.error("empty")
        value = self.parse_or()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek().text!r}")
        return value

    def parse_or(self) -> Any:
        value = self.parse_and()
        while self.at_op("||"):
            self.take()
            right = self.parse_and()
            value = truthy(value) or truthy(right)
        return value

    def parse_and(self) -> Any:
        value = self.parse_not()
        while self.at_op("&&"):
            self.take()
            right = self.parse_not()
            value = truthy(value) and truthy(right)
        return value

    def parse_not(self) -> Any:
        if self.at_op("!"):
            self.take()
            return not truthy(self.parse_not())
        return self.parse_comparison()

    def parse_comparison(self) -> Any:
        left = self.parse_primary()
        if self.at_op("==", "!=", "<", "<=", ">", ">=", "=~", "in"):
            op = self.take().text
            if op == "in":
                right = self.parse_list()
                return any(_coerce_pair(left, item)[0] == _coerce_pair(left, item)[1] for item in right)
            right = self.parse_primary()
            if op == "=~":
                return re.search(_to_text(right), _to_text(left)) is not None
            a, b = _coerce_pair(left, right)
            if op in ("<", "<=", ">", ">=") and not isinstance(a, float):
                raise self.error(f"cannot order non-numbers {left!r} {op} {right!r}")
            return {
                "==": lambda: a == b,
                "!=": lambda: a != b,
                "<": lambda: a < b,
                "<=": lambda: a <= b,
                ">": lambda: a > b,
                ">=": lambda: a >= b,
            }[op]()
        return left

    def parse_list(self) -> list[Any]:
        self.take("[")
        items: list[Any] = []
        while not self.at_op("]"):
            items.append(self.parse_primary())
            if self.at_op(","):
                self.take()
        self.take("]")
        return items

    def parse_primary(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end")
        if tok.kind == "op" and tok.text == "(":
            self.take()
            value = self.parse_or()
            self.take(")")
            return value
        if tok.kind == "op":
            raise self.error(f"unexpected {tok.text!r}")
        self.i += 1
        if tok.kind == "str":
            return _unquote(tok.text)
        if tok.kind == "num":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.text in _FUNCTIONS and self.at_op("("):
            self.take("(")
            arg = self.parse_or()
            self.take(")")
            try:
                return _FUNCTIONS[tok.text](arg)
            except (TypeError, ValueError) as exc:
                raise self.error(f"{tok.text}({arg!r}): {exc}") from None
        if tok.text in ("true", "false"):
            return tok.text == "true"
        return self.resolve(tok.text)


def evaluate(text: str, variables: Mapping[str, Any] | None = None, *, bare_words: bool = True) -> Any:
    """Evaluate `text`; names found in `variables` are replaced, other bare words are strings.

    With `bare_words=False` an unknown name is an error (retry expressions, where a typo in
    `lastRetry.exitCode` must not silently compare a string).
    """
    variables = variables or {}

    def resolve(name: str) -> Any:
        if name in variables:
            return variables[name]
        if bare_words:
            return name
        raise WorkflowError(f"unknown name {name!r} in expression {text!r} (known: {sorted(variables)})")

    return _Parser(text, resolve).parse()


def evaluate_bool(text: str, variables: Mapping[str, Any] | None = None, *, bare_words: bool = True) -> bool:
    return truthy(evaluate(text, variables, bare_words=bare_words))
