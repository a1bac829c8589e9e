"""Go's text/template, the part `docker ... --format` users write; pure.

    render('{{range .Containers}}{{.IPv4Address}} {{end}}', network_inspect_dict)

A lexer, a parser to a small tree and an evaluator, following Go's grammar:
actions with `{{-`/`-}}` trimming and comments, pipelines (`a | b`), variables
(`$`, `$x := ...`, `$i, $v := range ...`), `if`/`else if`/`else`, `range`
(lists, maps in key order, `else`), `with`, parenthesised pipelines with a field
chain after them, and the functions docker's templates have (Go's builtins plus
json, join, split, lower, upper, title, pad, truncate). `define`/`template`/
`block` and method calls are not supported.

Data is plain JSON-like Python (the dicts cnmctl's inspect builds). Printing
follows Go's fmt: a list as `[a b]`, a map as `map[k:v]` (sorted keys), a
struct as `{v1 v2}`. Dicts are structs, except those reached through a field
named in MAP_FIELDS (Labels, Options, Containers...) or whose keys are not Go
identifiers: docker prints those as maps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAP_FIELDS = frozenset(
    {
        "Labels",
        "Options",
        "Containers",
        "AuxiliaryAddresses",
        "Subnets",
        "Ports",
        "PortBindings",
        "Attributes",
    }
)
_IDENT_KEY = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")
NO_VALUE = "<no value>"


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed on the data."""


class GoMap(dict):
    """A dict that prints as a Go map whatever its keys."""


# ---------------------------------------------------------------- printing as Go's fmt %v


def is_map(value: Any, name: str = "") -> bool:
    if isinstance(value, GoMap) or name in MAP_FIELDS:
        return True
    return not value or not all(isinstance(k, str) and _IDENT_KEY.match(k) for k in value)


def go_str(value: Any, name: str = "") -> str:
    """`value` as Go's fmt prints it with %v."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if is_map(value, name):
            items = sorted(value.items(), key=lambda kv: str(kv[0]))
            return "map[" + " ".join(f"{go_str(k)}:{go_str(v, '')}" for k, v in items) + "]"
        return "{" + " ".join(go_str(v, k) for k, v in value.items()) + "}"
    return str(value)


def _go_float(value: float) -> str:
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _json_ready(value: Any, name: str = "") -> Any:
    """Maps with sorted keys, as Go's encoding/json writes them."""
    if isinstance(value, Mapping):
        items = sorted(value.items()) if is_map(value, name) else value.items()
        return {k: _json_ready(v, k) for k, v in items}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(_json_ready(value), separators=(",", ":"), ensure_ascii=False)


def truthy(value: Any) -> bool:
    """Go's notion of "true" in if/with/and/or/not."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


# ---------------------------------------------------------------- functions


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _printf(fmt: str, *args: Any) -> str:
    it = iter(args)

    def one(m: re.Match) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        try:
            arg = next(it)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        spec = flags.replace("#", "") + (width or "") + (f".{prec}" if prec else "")
        if verb in "vs":
            return format(go_str(arg), ("<" if "-" in flags else ">") + (width or ""))
        if verb == "q":
            return format(json.dumps(str(arg)), ("<" if "-" in flags else ">") + (width or ""))
        if verb == "t":
            return go_str(bool(arg))
        if verb in "dxXob":
            return format(int(arg), spec.replace("-", "<") + verb.replace("x", "x"))
        if verb in "feEgG":
            return format(float(arg), spec.replace("-", "<") + verb)
        return f"%!{verb}({go_str(arg)})"

    return _VERB.sub(one, fmt)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if value is None:
            raise TemplateError("index of untyped nil")
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list | tuple | str):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *bs: Any) -> bool:
        try:
            return all(op(a, b) for b in bs) if bs else op(a, None)
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None

    return compare


def _and(*args: Any) -> Any:
    for arg in args:
        if not truthy(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truthy(arg):
            return arg
    return args[-1]


def _truncate(text: Any, n: int) -> str:
    return str(text)[:n]


FUNCS: dict[str, Callable[..., Any]] = {
    # Go's builtins
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
    "len": lambda v: len(v),
    "index": _index,
    "print": lambda *a: "".join(go_str(v) for v in a),
    "println": lambda *a: " ".join(go_str(v) for v in a) + "\n",
    "printf": _printf,
    "eq": _cmp(lambda a, b: a == b),
    "ne": _cmp(lambda a, b: a != b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    # docker's (cli/templates)
    "json": to_json,
    "join": lambda items, sep: sep.join(go_str(i) for i in items),
    "split": lambda text, sep: str(text).split(sep),
    "lower": lambda text: str(text).lower(),
    "upper": lambda text: str(text).upper(),
    "title": lambda text: str(text).title(),
    "pad": lambda text, before, after: " " * before + go_str(text) + " " * after,
    "truncate": _truncate,
}


# ---------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # str, num, ident, field, var, "(", ")", "|", ",", ":=", "=", bool, nil
    text: str
    spaced: bool  # whitespace before it


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<str>"(?:[^"\\]|\\.)*")
    |(?P<raw>`[^`]*`)
    |(?P<char>'(?:[^'\\]|\\.)')
    |(?P<decl>:=)
    |(?P<punct>[()|,=])
    |(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|\.\d+))
    |(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    |(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


def _lex_action(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, spaced = 0, True
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise TemplateError(f"unexpected {text[pos]!r} in action {{{{{text.strip()}}}}}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "ws":
            spaced = True
            continue
        value = m.group()
        if kind == "raw":
            kind, value = "str", json.dumps(value[1:-1])
        elif kind == "char":
            kind, value = "num", str(ord(json.loads('"' + value[1:-1] + '"')))
        elif kind in ("punct", "decl"):
            kind = value
        elif kind == "ident" and value in ("true", "false"):
            kind = "bool"
        elif kind == "ident" and value == "nil":
            kind = "nil"
        toks.append(_Tok(kind, value, spaced))
        spaced = False
    return toks


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _segments(source: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces, with trim markers applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            out.append(("text", text))
        body = m.group(2)
        if not body.strip().startswith("/*"):
            out.append(("action", body))
        elif not body.strip().endswith("*/"):
            raise TemplateError("unclosed comment")
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = source[pos:]
    if trim_next:
        rest = rest.lstrip()
    if "{{" in rest:
        raise TemplateError("unclosed action")
    if rest:
        out.append(("text", rest))
    return out


# ---------------------------------------------------------------- parser


@dataclass
class _Pipe:
    decl: list[str]
    cmds: list[list[Any]]  # each command: operands (tokens or nested _Pipe with chain)
    assign: bool = False  # `$x = ...` (re-assignment) rather than `:=`


@dataclass
class _Sub:
    pipe: _Pipe
    chain: list[str]


@dataclass
class _Node:
    kind: str  # text, action, if, range, with
    text: str = ""
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


class _Parser:
    def __init__(self, source: str) -> None:
        self.segs = _segments(source)
        self.pos = 0
        # The tokens after `else` of an {{else if ...}} / {{else with ...}}.
        self.else_chain: list[_Tok] | None = None

    def parse(self) -> list[_Node]:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{{stop}}}}}")
        return nodes

    def _list(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an {{else...}} or {{end}} (returned as the stop word)."""
        nodes: list[_Node] = []
        while self.pos < len(self.segs):
            kind, text = self.segs[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_Node("text", text=text))
                continue
            toks = _lex_action(text)
            if not toks:
                raise TemplateError("missing value for command")
            head = toks[0].text if toks[0].kind == "ident" else ""
            if head in ("end", "else"):
                if head == "else" and len(toks) > 1:
                    self.else_chain = toks[1:]
                elif len(toks) > 1:
                    raise TemplateError(f"unexpected {toks[1].text!r} in end")
                return nodes, head
            if head in ("if", "range", "with"):
                nodes.append(self._control(head, toks[1:]))
            elif head in ("define", "template", "block"):
                raise TemplateError(f"{{{{{head}}}}} is not supported")
            else:
                nodes.append(_Node("action", pipe=_parse_pipe(toks)))
        return nodes, None

    def _control(self, kind: str, toks: list[_Tok]) -> _Node:
        if not toks:
            raise TemplateError(f"missing value for {kind}")
        node = _Node(kind, pipe=_parse_pipe(toks))
        node.body, stop = self._list()
        if stop == "else" and self.else_chain is not None:
            chain, self.else_chain = self.else_chain, None
            if chain[0].kind != "ident" or chain[0].text not in ("if", "with"):
                raise TemplateError(f"unexpected {chain[0].text!r} after else")
            # {{else if x}}: a nested if whose {{end}} ends this one too.
            node.orelse = [self._control(chain[0].text, chain[1:])]
            return node
        if stop == "else":
            node.orelse, stop = self._list()
        if stop != "end":
            raise TemplateError(f"unexpected EOF: {{{{{kind}}}}} without {{{{end}}}}")
        return node


def _parse_pipe(toks: list[_Tok]) -> _Pipe:
    decl: list[str] = []
    assign = False
    # `$x :=`, `$i, $v :=`, `$x =`
    for i, t in enumerate(toks):
        if t.kind in (":=", "="):
            names = [x for x in toks[:i] if x.kind != ","]
            if names and all(x.kind == "var" and "." not in x.text for x in names):
                decl = [x.text for x in names]
                assign = t.kind == "="
                toks = toks[i + 1 :]
            break
    cmds: list[list[Any]] = [[]]
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "|":
            cmds.append([])
            i += 1
            continue
        if t.kind == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise TemplateError("unclosed left paren")
            sub = _Sub(_parse_pipe(toks[i + 1 : j - 1]), [])
            if j < len(toks) and toks[j].kind == "field" and not toks[j].spaced:
                sub.chain = toks[j].text.split(".")[1:]
                j += 1
            cmds[-1].append(sub)
            i = j
            continue
        if t.kind in (")", ",", ":=", "="):
            raise TemplateError(f"unexpected {t.text!r} in command")
        cmds[-1].append(t)
        i += 1
    if any(not c for c in cmds):
        raise TemplateError("missing command in pipeline")
    return _Pipe(decl, cmds, assign)


# ---------------------------------------------------------------- evaluation


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f'undefined variable "{name}"')

    def set(self, name: str, value: Any, *, new: bool) -> None:
        if new:
            self.frames[-1][name] = value
            return
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f'undefined variable "{name}"')


def _field(value: Any, name: str, parent: str) -> Any:
    if isinstance(value, Mapping):
        if name in value:
            v = value[name]
            return GoMap(v) if name in MAP_FIELDS and isinstance(v, dict) else v
        if is_map(value, parent):
            return None
        raise TemplateError(f"can't evaluate field {name} in type {parent or 'object'}")
    if value is None:
        raise TemplateError(f"nil pointer evaluating .{name}")
    raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")


def _chain(value: Any, names: Sequence[str], parent: str = "") -> Any:
    for name in names:
        value = _field(value, name, parent)
        parent = name
    return value


class _Exec:
    def __init__(self, root: Any) -> None:
        self.scope = _Scope(root)
        self.out: list[str] = []

    def run(self, nodes: list[_Node], dot: Any) -> None:
        for node in nodes:
            if node.kind == "text":
                self.out.append(node.text)
            elif node.kind == "action":
                assert node.pipe is not None
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(NO_VALUE if value is None else go_str(value))
            else:
                self.control(node, dot)

    def control(self, node: _Node, dot: Any) -> None:
        assert node.pipe is not None
        self.scope.frames.append({})
        try:
            value = self.pipe(node.pipe, dot)
            if node.kind == "if":
                self.run(node.body if truthy(value) else node.orelse, dot)
            elif node.kind == "with":
                self.run(
                    node.body if truthy(value) else node.orelse, value if truthy(value) else dot
                )
            else:
                self.range(node, value, dot)
        finally:
            self.scope.frames.pop()

    def range(self, node: _Node, value: Any, dot: Any) -> None:
        assert node.pipe is not None
        if value is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda kv: str(kv[0]))
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"range can't iterate over {go_str(value)}")
        if not items:
            self.run(node.orelse, dot)
            return
        names = node.pipe.decl
        for key, item in items:
            if len(names) == 2:
                self.scope.set(names[0], key, new=True)
                self.scope.set(names[1], item, new=True)
            elif names:
                self.scope.set(names[0], item, new=True)
            self.run(node.body, item)

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = None
        for i, cmd in enumerate(pipe.cmds):
            value = self.command(cmd, dot, piped=i > 0, prev=value)
        if pipe.decl and len(pipe.decl) == 1:
            self.scope.set(pipe.decl[0], value, new=not pipe.assign)
        return value

    def command(self, cmd: list[Any], dot: Any, *, piped: bool, prev: Any) -> Any:
        head = cmd[0]
        if isinstance(head, _Tok) and head.kind == "ident":
            fn = FUNCS.get(head.text)
            if fn is None:
                raise TemplateError(f'function "{head.text}" not defined')
            args = [self.operand(a, dot) for a in cmd[1:]]
            if piped:
                args.append(prev)
            try:
                return fn(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise TemplateError(f"error calling {head.text}: {exc}") from None
        if len(cmd) > 1 or piped:
            raise TemplateError("can't give arguments to a non-function (method calls unsupported)")
        return self.operand(head, dot)

    def operand(self, op: Any, dot: Any) -> Any:
        if isinstance(op, _Sub):
            return _chain(self.pipe(op.pipe, dot), op.chain)
        kind, text = op.kind, op.text
        if kind == "field":
            return dot if text == "." else _chain(dot, text.split(".")[1:])
        if kind == "var":
            name, *chain = text.split(".")
            return _chain(self.scope.get(name), chain)
        if kind == "str":
            return json.loads(text)
        if kind == "num":
            return (
                int(text, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", text) else float(text)
            )
        if kind == "bool":
            return text == "true"
        if kind == "nil":
            return None
        raise TemplateError(f"function {text!r} used as a value")


def compile_template(source: str) -> Callable[[Any], str]:
    """The render function of `source`; TemplateError when it does not parse."""
    nodes = _Parser(source).parse()

    def render(data: Any) -> str:
        run = _Exec(data)
        run.run(nodes, data)
        return "".join(run.out)

    return render


def render(source: str, data: Any) -> str:
    return compile_template(source)(data)
