"""expr-lang (github.com/expr-lang/expr), the language of Argo's `{{=...}}`, `valueFrom.expression`,
`retryStrategy.expression` and hook expressions, with the functions Argo adds to its environment.

Typed like expr: `==` between a string and a number is false (`lastRetry.exitCode` is a string, so
compare it with `'75'` or `asInt(lastRetry.exitCode) == 75`); `/` divides as floats; `&&`, `||`,
`??` and `?:` are lazy; a missing map key, and any member of nil, is nil. Closures
(`map(xs, {# * 2})`) bind `#`.

Functions: expr's builtins that workflows use (len, map, filter, all, any, none, one, keys, values,
string, int, float, abs, max, min, lower, upper, trim, split, join, toJSON, fromJSON), Argo's
(asInt, asFloat, string, jsonpath, toJson) and a subset of sprig under `sprig.` (see `SPRIG`).
`parse` checks a text before a run, so an unknown function is refused before anything runs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.local_runner.errors import UnsupportedFeature, WorkflowError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<op>\?\?|\?\.|==|!=|<=|>=|&&|\|\||\.\.|\*\*|\#|[-+*/%<>!?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_INFIX_WORDS = {"in", "matches", "contains", "startsWith", "endsWith"}
_BINARY = {
    "??": 5,
    "||": 10,
    "&&": 15,
    "==": 20,
    "!=": 20,
    "<": 20,
    ">": 20,
    "<=": 20,
    ">=": 20,
    "in": 20,
    "matches": 20,
    "contains": 20,
    "startsWith": 20,
    "endsWith": 20,
    "..": 25,
    "+": 30,
    "-": 30,
    "*": 60,
    "/": 60,
    "%": 60,
    "**": 100,
}


class ExprError(WorkflowError):
    """An expression could not be evaluated."""


@dataclass(frozen=True)
class Tok:
    kind: str  # num | str | name | op | end
    text: str


def tokenize(text: str) -> list[Tok]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExprError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "name" and value in _WORD_OPS:
            tokens.append(Tok("op", _WORD_OPS[value]))
        elif kind == "name" and value in _INFIX_WORDS:
            tokens.append(Tok("op", value))
        else:
            tokens.append(Tok(kind, value))
    tokens.append(Tok("end", ""))
    return tokens


# ---- AST: tuples (kind, ...) --------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def error(self, why: str) -> ExprError:
        return ExprError(f"invalid expression {self.text.strip()!r}: {why}")

    def peek(self) -> Tok:
        return self.tokens[self.i]

    def next(self) -> Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.text != op:
            raise self.error(f"expected {op!r}, got {tok.text or 'the end'!r}")

    def at(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == op

    def parse(self) -> tuple:
        node = self.expression()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return node

    def expression(self) -> tuple:
        cond = self.binary(0)
        if self.at("?"):
            self.next()
            yes = self.expression()
            self.expect(":")
            no = self.expression()
            return ("if", cond, yes, no)
        return cond

    def binary(self, min_prec: int) -> tuple:
        left = self.unary()
        while True:
            tok = self.peek()
            negated = False
            if tok.kind == "op" and tok.text == "!" and self.tokens[self.i + 1].text in ("in", "matches"):
                negated = True
                self.next()
                tok = self.peek()
            prec = _BINARY.get(tok.text) if tok.kind == "op" else None
            if prec is None or prec <= min_prec and not (tok.text == "**" and prec >= min_prec):
                if negated:
                    raise self.error("expected in after !")
                return left
            self.next()
            right = self.binary(prec)
            left = ("bin", tok.text, left, right)
            if negated:
                left = ("not", left)

    def unary(self) -> tuple:
        if self.at("!"):
            self.next()
            return ("not", self.unary())
        if self.at("-"):
            self.next()
            return ("neg", self.unary())
        if self.at("+"):
            self.next()
        return self.postfix(self.primary())

    def arguments(self, closing: str, closures: bool = False) -> list[tuple]:
        args = []
        while not self.at(closing):
            if closures and args and self.at("{"):
                args.append(self.closure())
            else:
                args.append(self.expression())
            if not self.at(closing):
                self.expect(",")
        self.expect(closing)
        return args

    def closure(self) -> tuple:
        self.expect("{")
        body = self.expression()
        self.expect("}")
        return ("closure", body)

    def postfix(self, node: tuple) -> tuple:
        while True:
            if self.at(".") or self.at("?."):
                self.next()
                tok = self.next()
                if tok.kind != "name":
                    raise self.error(f"expected a name after '.', got {tok.text!r}")
                if self.at("("):
                    self.next()
                    node = ("call", ("member", node, ("lit", tok.text)), self.arguments(")"))
                else:
                    node = ("member", node, ("lit", tok.text))
            elif self.at("["):
                self.next()
                if self.at(":"):
                    self.next()
                    end = None if self.at("]") else self.expression()
                    self.expect("]")
                    node = ("slice", node, None, end)
                    continue
                index = self.expression()
                if self.at(":"):
                    self.next()
                    end = None if self.at("]") else self.expression()
                    self.expect("]")
                    node = ("slice", node, index, end)
                    continue
                self.expect("]")
                node = ("member", node, index)
            elif self.at("("):
                self.next()
                closures = node[0] == "var" and node[1] in CLOSURE_FUNCTIONS
                node = ("call", node, self.arguments(")", closures))
            else:
                return node

    def primary(self) -> tuple:
        tok = self.next()
        if tok.kind == "num":
            return ("lit", float(tok.text) if "." in tok.text or "e" in tok.text.lower() else int(tok.text))
        if tok.kind == "str":
            return ("lit", _unquote(tok.text))
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text == "nil":
                return ("lit", None)
            return ("var", tok.text)
        if tok.kind == "op" and tok.text == "#":
            if self.peek().kind == "name" and self.peek().text == "index":
                self.next()
                return ("var", "#index")
            return ("var", "#")
        if tok.kind == "op" and tok.text == "(":
            node = self.expression()
            self.expect(")")
            return node
        if tok.kind == "op" and tok.text == "[":
            return ("list", self.arguments("]"))
        if tok.kind == "op" and tok.text == "{":
            items = []
            while not self.at("}"):
                key = self.next()
                if key.kind not in ("name", "str", "num"):
                    raise self.error(f"bad map key {key.text!r}")
                self.expect(":")
                items.append((_unquote(key.text) if key.kind == "str" else key.text, self.expression()))
                if not self.at("}"):
                    self.expect(",")
            self.expect("}")
            return ("map", items)
        raise self.error(f"unexpected {tok.text or 'end'!r}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


# ---- values ------------------------------------------------------------------------------------
def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_int(v: Any) -> int:
    if _is_num(v):
        return int(v)
    try:
        return int(str(v).strip())
    except ValueError:
        try:
            return int(float(str(v).strip()))
        except ValueError:
            raise ExprError(f"asInt: cannot convert {v!r} to int") from None


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ExprError(f"asFloat: cannot convert {v!r} to float") from None


def go_string(v: Any) -> str:
    """Go's %v of a value, as Argo renders a `{{=...}}` result (JSON for lists and maps)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, dict)):
        return to_json(v)
    return str(v)


def to_json(v: Any) -> str:
    def norm(x: Any) -> Any:
        if isinstance(x, float) and x.is_integer():
            return int(x)
        if isinstance(x, dict):
            return {k: norm(x[k]) for k in sorted(x)}
        if isinstance(x, list):
            return [norm(i) for i in x]
        return x

    return json.dumps(norm(v), separators=(",", ":"))


def jsonpath(document: Any, path: str) -> Any:
    """Argo's jsonpath(json, path): a list for wildcards, filters and slices, else the one value."""
    from jsonpath_ng.exceptions import JsonPathParserError
    from jsonpath_ng.ext import parse as jp_parse

    data = json.loads(document) if isinstance(document, str) else document
    try:
        expr = jp_parse(path.replace("&&", "&").replace("||", "|"))
    except (JsonPathParserError, Exception) as exc:  # jsonpath_ng raises several kinds
        raise ExprError(f"jsonpath {path!r}: {exc}") from None
    found = [m.value for m in expr.find(data)]
    if any(c in path for c in ("*", "?(", ":", "..", ",")):
        return found
    if not found:
        raise ExprError(f"jsonpath {path!r}: no match")
    return found[0]


def _num_fold(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        values = [a if _is_num(a) else _as_int(a) for a in args]
        out = values[0]
        for v in values[1:]:
            out = fn(out, v)
        return out

    return apply


SPRIG: dict[str, Callable[..., Any]] = {
    "b64dec": lambda s: base64.b64decode(str(s)).decode(errors="replace"),
    "b64enc": lambda s: base64.b64encode(str(s).encode()).decode(),
    "add": _num_fold(lambda a, b: a + b),
    "sub": _num_fold(lambda a, b: a - b),
    "mul": _num_fold(lambda a, b: a * b),
    "div": _num_fold(lambda a, b: a // b),
    "max": _num_fold(max),
    "min": _num_fold(min),
    "upper": lambda s: str(s).upper(),
    "lower": lambda s: str(s).lower(),
    "trim": lambda s: str(s).strip(),
    "replace": lambda old, new, s: str(s).replace(str(old), str(new)),
    "toString": go_string,
    "atoi": _as_int,
    "int": _as_int,
    "float64": _as_float,
    "default": lambda d, v=None: v if v not in (None, "", [], {}, 0, False) else d,
    "contains": lambda sub, s: str(sub) in str(s),
    "hasPrefix": lambda p, s: str(s).startswith(str(p)),
    "hasSuffix": lambda p, s: str(s).endswith(str(p)),
    "splitList": lambda sep, s: str(s).split(str(sep)),
    "join": lambda sep, xs: str(sep).join(go_string(x) for x in xs),
    "toJson": to_json,
    "quote": lambda s: f'"{s}"',
    "squote": lambda s: f"'{s}'",
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "asInt": _as_int,
    "asFloat": _as_float,
    "string": go_string,
    "int": _as_int,
    "float": _as_float,
    "jsonpath": jsonpath,
    "toJson": to_json,
    "toJSON": to_json,
    "fromJSON": json.loads,
    "len": lambda v: len(v),
    "abs": abs,
    "max": lambda *a: max(a[0] if len(a) == 1 else a),
    "min": lambda *a: min(a[0] if len(a) == 1 else a),
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "trim": lambda s, chars=None: str(s).strip(chars),
    "split": lambda s, sep: str(s).split(sep),
    "join": lambda xs, sep="": sep.join(go_string(x) for x in xs),
    "keys": lambda m: list(m),
    "values": lambda m: list(m.values()),
}
CLOSURE_FUNCTIONS = ("map", "filter", "all", "any", "none", "one")


def _eq(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return a == b
    if type(a) is not type(b) and not (a is None or b is None):
        return False
    return a == b


class _Eval:
    def __init__(self, text: str, env: Mapping[str, Any]):
        self.text = text
        self.env = env

    def error(self, why: str) -> ExprError:
        return ExprError(f"expression {self.text.strip()!r}: {why}")

    def run(self, node: tuple, scope: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "var":
            name = node[1]
            if name in scope:
                return scope[name]
            if name in self.env:
                return self.env[name]
            if name in FUNCTIONS or name == "sprig":
                return ("fn", name)
            raise self.error(f"unknown name {name!r}")
        if kind == "list":
            return [self.run(n, scope) for n in node[1]]
        if kind == "map":
            return {k: self.run(v, scope) for k, v in node[1]}
        if kind == "not":
            return not self.truth(self.run(node[1], scope))
        if kind == "neg":
            value = self.run(node[1], scope)
            if not _is_num(value):
                raise self.error(f"cannot negate {value!r}")
            return -value
        if kind == "if":
            return self.run(node[2] if self.truth(self.run(node[1], scope)) else node[3], scope)
        if kind == "member":
            return self.member(self.run(node[1], scope), self.run(node[2], scope))
        if kind == "slice":
            value = self.run(node[1], scope)
            start = None if node[2] is None else self.run(node[2], scope)
            end = None if node[3] is None else self.run(node[3], scope)
            return value[start:end]
        if kind == "call":
            return self.call(node, scope)
        if kind == "bin":
            return self.binary(node, scope)
        raise self.error(f"cannot evaluate {kind}")

    def truth(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected a bool, got {value!r}")
        return value

    def member(self, value: Any, key: Any) -> Any:
        if isinstance(value, tuple) and value[:1] == ("fn",) and value[1] == "sprig":
            if key not in SPRIG:
                raise self.error(f"sprig.{key} is not supported locally")
            return ("sprig", key)
        if isinstance(value, dict):
            return value.get(key)
        if isinstance(value, (list, str)) and _is_num(key):
            try:
                return value[int(key)]
            except IndexError:
                raise self.error(f"index {key} out of range") from None
        if value is None:  # e.g. the outputs of a skipped task: nil, so `?? 'fallback'` applies
            return None
        raise self.error(f"cannot read {key!r} of {value!r}")

    def call(self, node: tuple, scope: dict[str, Any]) -> Any:
        target = node[1]
        if target[0] == "var" and target[1] in CLOSURE_FUNCTIONS:
            return self.closure_call(target[1], node[2], scope)
        fn = self.run(target, scope)
        args = [self.run(a, scope) for a in node[2]]
        if isinstance(fn, tuple) and fn[0] == "fn":
            impl = FUNCTIONS[fn[1]]
        elif isinstance(fn, tuple) and fn[0] == "sprig":
            impl = SPRIG[fn[1]]
        else:
            raise self.error(f"{fn!r} is not a function")
        try:
            return impl(*args)
        except ExprError:
            raise
        except Exception as exc:  # a builtin's own error, with the expression named
            raise self.error(f"{exc.__class__.__name__}: {exc}") from None

    def closure_call(self, name: str, args: list[tuple], scope: dict[str, Any]) -> Any:
        if len(args) != 2 or args[1][0] != "closure":
            raise self.error(f"{name}(array, {{predicate}}) expected")
        items = self.run(args[0], scope)
        out = []
        for index, item in enumerate(items):
            out.append(self.run(args[1][1], {**scope, "#": item, "#index": index}))
        if name == "map":
            return out
        if name == "filter":
            return [item for item, keep in zip(items, out, strict=True) if self.truth(keep)]
        truths = [self.truth(v) for v in out]
        return {"all": all, "any": any, "none": lambda t: not any(t), "one": lambda t: sum(t) == 1}[name](
            truths
        )

    def binary(self, node: tuple, scope: dict[str, Any]) -> Any:
        op, left_node, right_node = node[1], node[2], node[3]
        left = self.run(left_node, scope)
        if op == "&&":
            return self.truth(left) and self.truth(self.run(right_node, scope))
        if op == "||":
            return self.truth(left) or self.truth(self.run(right_node, scope))
        if op == "??":
            return left if left is not None else self.run(right_node, scope)
        right = self.run(right_node, scope)
        if op == "==":
            return _eq(left, right)
        if op == "!=":
            return not _eq(left, right)
        if op in ("<", ">", "<=", ">="):
            if not ((_is_num(left) and _is_num(right)) or (isinstance(left, str) and isinstance(right, str))):
                raise self.error(f"invalid operation: {left!r} {op} {right!r} (mismatched types)")
            return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
        if op == "in":
            if isinstance(right, dict):
                return left in right
            if isinstance(right, list):
                return any(_eq(left, item) for item in right)
            raise self.error(f"'in' needs an array or a map, got {right!r}")
        if op in ("contains", "startsWith", "endsWith", "matches"):
            if not (isinstance(left, str) and isinstance(right, str)):
                raise self.error(f"{op} needs strings")
            if op == "contains":
                return right in left
            if op == "startsWith":
                return left.startswith(right)
            if op == "endsWith":
                return left.endswith(right)
            return re.search(right, left) is not None
        if op == "..":
            return list(range(_as_int(left), _as_int(right) + 1))
        if op == "+" and isinstance(left, str) and isinstance(right, str):
            return left + right
        if op == "+" and isinstance(left, list) and isinstance(right, list):
            return left + right
        if not (_is_num(left) and _is_num(right)):
            raise self.error(f"invalid operation: {left!r} {op} {right!r} (mismatched types)")
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            if right == 0:
                raise self.error("division by zero")
            return left / right
        if op == "%":
            return int(left) % int(right)
        if op == "**":
            return float(left) ** float(right)
        raise self.error(f"unknown operator {op}")


def parse(text: str) -> tuple:
    """Parse `text` and check every function it calls exists; raise UnsupportedFeature otherwise."""
    tree = _Parser(text).parse()
    _check_functions(tree, text)
    return tree


def _check_functions(node: Any, text: str) -> None:
    if not isinstance(node, tuple):
        if isinstance(node, list):
            for item in node:
                _check_functions(item, text)
        return
    if node[0] == "call":
        target = node[1]
        if target[0] == "var" and target[1] not in FUNCTIONS and target[1] not in CLOSURE_FUNCTIONS:
            raise UnsupportedFeature(
                f"expression {text.strip()!r}: function {target[1]}() is not in Argo's expression "
                f"environment (known: {', '.join(sorted([*FUNCTIONS, *CLOSURE_FUNCTIONS]))}, sprig.*)"
            )
        if target[0] == "member" and target[1] == ("var", "sprig") and target[2][1] not in SPRIG:
            raise UnsupportedFeature(
                f"expression {text.strip()!r}: sprig.{target[2][1]} is not supported locally "
                f"(supported: {', '.join(sorted(SPRIG))})"
            )
    for child in node[1:]:
        if isinstance(child, (tuple, list)):
            _check_functions(child, text)


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    return _Eval(text, env).run(parse(text), {})


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"steps.a.outputs.result": "x"} -> {"steps": {"a": {"outputs": {"result": "x"}}}} (dicts win)."""
    root: dict[str, Any] = {}
    for key in sorted(flat, key=lambda k: k.count(".")):
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        if not isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = flat[key]
    return root
