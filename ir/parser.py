"""IR text parser: ``parse_ir(text)`` builds the Graph that printed as ``text``.

Types given in the text are checked against each op's type inference, so a hand-edited dump that
no longer type-checks is rejected with the line and the op named.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import lark
import numpy as np

from .annotations import BufferRef, Cost
from .graph import CONST, FUSED, Graph, Node, Value
from .opdef import AttrKind, UnknownOpError, get_op
from .types import DType, TensorType

_GRAMMAR = Path(__file__).with_name("grammar.lark")


class IRParseError(ValueError):
    """Text that is not valid IR; the message gives the line and column."""


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    return lark.Lark(_GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_ir(text: str, constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Parse IR text; ``@name`` constant references are looked up in ``constants`` (e.g. an npz)."""
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        line = text.splitlines()[e.line - 1] if 0 < e.line <= len(text.splitlines()) else ""
        raise IRParseError(f"line {e.line}, column {e.column}: unexpected input\n  {line}") from None
    return _Builder(constants or {}).graph(tree.children[0])


def load_ir(path: str | Path) -> Graph:
    """Read a ``.gir`` file and the ``.npz`` of its big constants beside it (if present)."""
    path = Path(path)
    npz = path.with_suffix(".npz")
    consts: dict[str, np.ndarray] = {}
    if npz.exists():
        with np.load(npz, allow_pickle=False) as data:
            consts = {k: data[k] for k in data.files}
    return parse_ir(path.read_text(), consts)


def save_ir(graph: Graph, path: str | Path) -> None:
    """Write ``graph`` as ``path`` (text) and its big constants as ``path`` with suffix ``.npz``."""
    from .printer import print_graph_with_constants

    path = Path(path)
    text, consts = print_graph_with_constants(graph)
    path.write_text(text)
    if consts:
        np.savez(path.with_suffix(".npz"), **consts)


def _err(tree: lark.Tree | lark.Token, msg: str) -> IRParseError:
    meta = tree if isinstance(tree, lark.Token) else tree.meta
    line = getattr(meta, "line", "?")
    return IRParseError(f"line {line}: {msg}")


class _Builder:
    def __init__(self, constants: Mapping[str, np.ndarray]) -> None:
        self.constants = constants

    def graph(self, t: lark.Tree, scope: dict[str, Value] | None = None) -> Graph:
        name_tok, *rest = t.children
        params = [c for c in rest if isinstance(c, lark.Tree) and c.data == "param"]
        scope = {}
        inputs = []
        for p in params:
            vtok, ty = p.children
            v = Value(self.type(ty), _value_name(vtok))
            if vtok[1:] in scope:
                raise _err(vtok, f"input {vtok} defined twice")
            scope[vtok[1:]] = v
            inputs.append(v)
        stmts = [c for c in rest if isinstance(c, lark.Tree) and c.data.endswith("_stmt")]
        refs = rest[-1]
        nodes = [self.stmt(s, scope) for s in stmts]
        outputs = tuple(self.ref(r, scope) for r in refs.children)
        return Graph(name_tok[1:], tuple(inputs), tuple(nodes), outputs)

    def stmt(self, t: lark.Tree, scope: dict[str, Value]) -> Node:
        results = t.children[0].children
        if t.data == "const_stmt":
            ty = self.type(t.children[1])
            data = self.const_data(t.children[2], ty, results[0])
            node = Node(CONST, (), (Value(ty, _value_name(results[0])),), {"value": data})
        elif t.data == "op_stmt":
            node = self.op_stmt(t, scope)
        else:
            node = self.fused_stmt(t, scope)
        for tok, v in zip(results, node.outputs):
            if tok[1:] in scope:
                raise _err(tok, f"value {tok} defined twice")
            scope[tok[1:]] = v
        return node

    def op_stmt(self, t: lark.Tree, scope: dict[str, Value]) -> Node:
        results, optok, refs, attrs_t, *rest = t.children
        anns, types_t = rest[:-1], rest[-1]
        inputs = tuple(self.ref(r, scope) for r in refs.children) if refs is not None else ()
        try:
            opdef = get_op(str(optok))
        except UnknownOpError as e:
            raise _err(optok, str(e)) from None
        raw = {str(a.children[0]): self.literal(a.children[1]) for a in attrs_t.children if a is not None} if attrs_t else {}
        try:
            for key, val in raw.items():
                spec = opdef.attr_index.get(key)
                if spec is not None and spec.kind is AttrKind.DTYPE and isinstance(val, str):
                    raw[key] = DType(val)
            opdef.check_arity(len(inputs))
            attrs = opdef.normalize_attrs(raw)
            inferred = list(opdef.infer([v.type for v in inputs], attrs))
        except (TypeError, ValueError) as e:
            raise _err(optok, f"{optok}: {e}") from None
        types = [self.type(x) for x in types_t.children]
        if types != inferred:
            raise _err(optok, f"{optok} results are {_fmt(inferred)}, but the text says {_fmt(types)}")
        outs = tuple(Value(ty, _value_name(tok)) for ty, tok in zip(types, results.children))
        if len(outs) != len(types):
            raise _err(optok, f"{optok} has {len(types)} results but {len(results.children)} names")
        return Node(str(optok), inputs, outs, attrs, self.annotations(anns))

    def fused_stmt(self, t: lark.Tree, scope: dict[str, Value]) -> Node:
        results, sym, refs, *rest = t.children
        i = 0
        anns = []
        while isinstance(rest[i], lark.Tree) and rest[i].data == "annotation":
            anns.append(rest[i])
            i += 1
        types = [self.type(x) for x in rest[i].children]
        body_stmts = [c for c in rest[i + 1 : -1]]
        yield_refs = rest[-1]
        inputs = tuple(self.ref(r, scope) for r in refs.children) if refs is not None else ()
        inner_scope: dict[str, Value] = {}
        body_inputs = []
        for tok, outer in zip(refs.children if refs is not None else [], inputs):
            inner = Value(outer.type, outer.name)
            inner_scope[tok[1:]] = inner
            body_inputs.append(inner)
        body_nodes = [self.stmt(s, inner_scope) for s in body_stmts]
        # Body values share the graph's numbering, so the outer scope must not reuse their names.
        for k in inner_scope:
            if k in scope and inner_scope[k] not in body_inputs:
                raise _err(sym, f"value %{k} inside fused {sym} shadows an outer value")
        outputs = tuple(self.ref(r, inner_scope) for r in yield_refs.children)
        if [v.type for v in outputs] != types:
            raise _err(sym, f"fused {sym} yields {_fmt([v.type for v in outputs])}, but the text says {_fmt(types)}")
        body = Graph(sym[1:], tuple(body_inputs), tuple(body_nodes), outputs)
        outs = tuple(Value(ty, _value_name(tok)) for ty, tok in zip(types, results.children))
        return Node(FUSED, inputs, outs, {}, self.annotations(anns), body, sym[1:])

    def ref(self, tok: lark.Token, scope: dict[str, Value]) -> Value:
        try:
            return scope[tok[1:]]
        except KeyError:
            raise _err(tok, f"use of undefined value {tok}") from None

    def type(self, t: lark.Tree) -> TensorType:
        dt_tok, *dims = t.children
        try:
            dtype = DType(str(dt_tok))
        except ValueError:
            raise _err(dt_tok, f"unknown dtype '{dt_tok}'") from None
        shape = []
        for d in dims:
            if d is None:
                continue
            tok = d.children[0]
            shape.append(int(tok) if d.data == "int_dim" else str(tok))
        return TensorType(tuple(shape), dtype)

    def const_data(self, t: lark.Tree, ty: TensorType, tok: lark.Token) -> np.ndarray:
        if t.data == "const_ref":
            key = t.children[0][1:]
            if key not in self.constants:
                raise _err(tok, f"constant @{key} has no data (load the .npz saved beside the IR)")
            arr = np.asarray(self.constants[key])
        else:
            items = [self.literal(c) for c in t.children if c is not None]
            arr = np.array(items if t.data == "const_list" else items[0], dtype=ty.dtype.numpy)
            if t.data == "const_list":
                if not ty.is_static or arr.size != ty.numel():
                    raise _err(tok, f"constant {tok} has {arr.size} elements but type {ty}")
                arr = arr.reshape(ty.shape)
        if arr.dtype != ty.dtype.numpy or tuple(arr.shape) != ty.shape:
            raise _err(tok, f"constant {tok} data is {arr.dtype}{list(arr.shape)}, but the text says {ty}")
        arr = arr.copy()
        arr.flags.writeable = False
        return arr

    def literal(self, t: Any) -> Any:
        kind = t.data
        if kind == "number":
            s = str(t.children[0])
            return float(s) if any(c in s for c in ".eEin") else int(s)
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "string":
            return json.loads(str(t.children[0]))
        if kind == "list":
            return tuple(self.literal(c) for c in t.children if c is not None)
        if kind == "word":
            return str(t.children[0])
        if kind == "cost":
            mean, err = str(t.children[0]).split("us±")
            return Cost(float(mean), float(err))
        if kind == "bufref":
            arena, off = str(t.children[0]).split("+")
            return BufferRef(arena, int(off))
        if kind == "ann_dict":
            return {str(c.children[0]): self.literal(c.children[1]) for c in t.children if c is not None}
        raise AssertionError(kind)

    def annotations(self, anns: list[lark.Tree]) -> dict[str, Any]:
        return {str(a.children[0]): self.literal(a.children[1]) for a in anns if a is not None}


def _value_name(tok: lark.Token) -> str | None:
    # Numbered values (%0, %17) are anonymous: the printer renumbers them.
    name = str(tok)[1:]
    return None if name.isdigit() else name


def _fmt(types: list[TensorType]) -> str:
    return ", ".join(str(t) for t in types)
