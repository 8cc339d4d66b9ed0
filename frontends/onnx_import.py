"""ONNX -> IR import.

Steps: read the model; upgrade opsets older than 18 to 18 with ``onnx.version_converter`` (newer
ones are read as they are); apply ``dynamic_batch``; run ONNX shape inference;
then convert the nodes in order. A table maps every ONNX tensor name to an IR value or to a
value known at import time (an array, or a ``SymShape`` built from symbolic dims). Nodes whose
operands are all known are evaluated right here (``onnx.reference``, or ``fold_symbolic`` for
shape arithmetic) and never become IR nodes; the rest go through ``onnx_ops.CONVERTERS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper, shape_inference, version_converter

from ..ir.graph import Graph, GraphBuilder, Value
from ..ir.types import Dim, DType, TensorType
from .errors import FrontendError, UnsupportedOpError
from .onnx_ops import CONVERTERS, FOLD_ONLY, NodeCtx
from .onnx_shapes import Known, SymShape, fold_symbolic, make_known
from .onnx_types import elem_type_name, identifier, ir_dtype

TARGET_OPSET = 18
"""Models older than this are upgraded to it; newer ones are read as they are, because from opset 18
on (checked up to 28) the ops the converters map only gained element types and optional extras
(Gelu, AveragePool dilations, Pad's wrap mode) that the converters handle or reject."""

_DEFAULT_DOMAINS = ("", "ai.onnx")
# Never evaluated at import time: results are random, or the op has sub-graphs reading outer values.
_NO_FOLD = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                      "Bernoulli", "If", "Loop", "Scan"})


def import_onnx(model: str | Path | bytes | onnx.ModelProto, *, dynamic_batch: bool | str = False) -> Graph:
    """Import an ONNX model (a path, serialized bytes or a ModelProto) into an IR Graph.

    ``dynamic_batch=False`` keeps the input shapes the model declares (named or unknown dims become
    symbols); ``True`` makes dim 0 of every input a symbol (the model's own name for it, else
    ``N``); a string makes it the symbol of that name.
    """
    file, proto = _load(model)
    try:
        return Importer(proto, dynamic_batch).run()
    except FrontendError as e:
        raise e.located(file) from None


def _load(model: str | Path | bytes | onnx.ModelProto) -> tuple[str | None, onnx.ModelProto]:
    if isinstance(model, onnx.ModelProto):
        return None, model
    if isinstance(model, bytes):
        return None, _parse(model, None)
    if not isinstance(model, (str, Path)):
        raise FrontendError(f"cannot import a {type(model).__name__} as ONNX: expected a path, bytes or ModelProto")
    path = Path(model)
    file = str(path)
    if not path.exists():
        raise FrontendError("no such file", file=file)
    if path.is_dir():
        raise FrontendError("is a directory, expected an ONNX file", file=file)
    try:
        proto = onnx.load(file)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise FrontendError(f"not an ONNX model ({e})", file=file) from None
    except OSError as e:
        raise FrontendError(f"cannot read the file ({e.strerror or e})", file=file) from None
    _check_is_model(proto, file)
    return file, proto


def _parse(data: bytes, file: str | None) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise FrontendError(f"not an ONNX model ({e})", file=file) from None
    _check_is_model(proto, file)
    return proto


def _check_is_model(proto: onnx.ModelProto, file: str | None) -> None:
    # Protobuf parses many byte strings "successfully" into an empty message; a model has a graph.
    if not proto.HasField("graph") or not proto.graph.output or not proto.opset_import:
        raise FrontendError("not an ONNX model (no graph, outputs or opset)", file=file)


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in _DEFAULT_DOMAINS:
            return int(o.version)
    raise FrontendError("the model imports no ai.onnx opset")


def _node_error(node: onnx.NodeProto, message: str, cls: type[FrontendError] = FrontendError) -> FrontendError:
    return cls(message, node_name=node.name or None, op_type=node.op_type)


def _prescan(graph: onnx.GraphProto) -> None:
    """Reject a node whose op no converter handles, unless its operands make it foldable.

    Done before the opset upgrade, which otherwise fails on such nodes with a less helpful error.
    """
    known = {t.name for t in graph.initializer}
    for node in graph.node:
        inputs_known = all(i == "" or i in known for i in node.input)
        default = node.domain in _DEFAULT_DOMAINS
        if default and (node.op_type in ("Shape", "Size") or (inputs_known and node.op_type not in _NO_FOLD)):
            known.update(node.output)
        elif not default or node.op_type not in CONVERTERS and node.op_type not in FOLD_ONLY:
            suffix = "" if default else f" (domain {node.domain})"
            raise _node_error(node, f"unsupported op{suffix}", UnsupportedOpError)


def _convert_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    version = _opset(model)
    if version >= TARGET_OPSET:
        return model
    try:
        return version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises bare RuntimeErrors and C++ asserts
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"cannot convert opset {version} to {TARGET_OPSET}: {first}") from None


def _make_batch_dynamic(model: onnx.ModelProto, symbol: str | None) -> onnx.ModelProto:
    model = _copy(model)
    g = model.graph
    inits = {t.name for t in g.initializer}
    for vi in g.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.shape.dim:
            continue
        d0 = vi.type.tensor_type.shape.dim[0]
        d0.dim_param = symbol or d0.dim_param or "N"
    # Declared shapes downstream may hold the old static batch; shape inference recomputes them.
    del g.value_info[:]
    for vi in g.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    return model


_BIG = 1024
"""Initializers with more elements than this lose their data in ``_without_weight_data``."""


def _without_weight_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose big initializers keep their name, type and shape but no data."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if int(np.prod(t.dims)) > _BIG:
            for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(f)
    return out


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    return v


class Importer:
    """Converts one (prepared) ONNX model; ``run`` returns the Graph."""

    def __init__(self, model: onnx.ModelProto, dynamic_batch: bool | str = False) -> None:
        _prescan(model.graph)
        # The converter and shape inference serialize the whole model; without the weights'
        # bytes that takes milliseconds instead of seconds. The data is read from here instead.
        self._weights = {t.name: t for t in model.graph.initializer}
        model = _convert_opset(_without_weight_data(model))
        if dynamic_batch:
            model = _make_batch_dynamic(model, dynamic_batch if isinstance(dynamic_batch, str) else None)
        try:
            model = shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001, S110 - inference only feeds a consistency check; it is optional
            pass
        self.model = model
        self.opset = _opset(model)
        g = model.graph
        self.b = GraphBuilder(identifier(g.name or "main", "g"))
        self.env: dict[str, Value | Known] = {}
        self._materialized: dict[str, Value] = {}
        self._used = {i for n in _all_nodes(g) for i in n.input} | {o.name for o in g.output}
        self._shape_sources: dict[tuple[Dim, ...], Value] = {}
        self._inferred = {vi.name: vi.type for vi in g.value_info}

    def run(self) -> Graph:
        """Convert every node and return the finished graph."""
        g = self.model.graph
        for t in g.initializer:
            self.env[t.name] = numpy_helper.to_array(self._weight(t))
        inits = {t.name for t in g.initializer}
        for vi in g.input:
            if vi.name not in inits:  # old exporters list initializers as inputs too; they are weights
                self.env[vi.name] = self.b.input(identifier(vi.name), self._input_type(vi))
        for node in g.node:
            self._node(node)
        outputs = []
        for vi in g.output:
            v = self.value_of(vi.name)
            if v.name is None:
                v.name = self.b.unique_name(identifier(vi.name, "out"))
            outputs.append(v)
        return self.b.build(outputs)

    def _weight(self, t: onnx.TensorProto) -> onnx.TensorProto:
        original = self._weights.get(t.name)
        if original is not None and original.dims == t.dims and original.data_type == t.data_type:
            return original
        return t  # made (or changed) by the opset converter: its data is its own

    def shape_source(self, dims: Sequence[Dim]) -> Value | None:
        """A value whose ``Shape`` gave exactly ``dims`` (to build tensors of a symbolic shape)."""
        return self._shape_sources.get(tuple(dims))

    def is_used(self, name: str) -> bool:
        """Whether a node or the graph output reads tensor ``name``."""
        return name in self._used

    # -- values ------------------------------------------------------------------------------------

    def _input_type(self, vi: onnx.ValueInfoProto) -> TensorType:
        where = f"input '{vi.name}'"
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedOpError(f"{where} is not a tensor")
        tt = vi.type.tensor_type
        dtype = ir_dtype(tt.elem_type)
        if dtype is None:
            raise UnsupportedOpError(f"{where} has element type {elem_type_name(tt.elem_type)}")
        if not tt.HasField("shape"):
            raise FrontendError(f"{where} has no shape")
        dims: list[Dim] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(identifier(d.dim_param, "d") if d.dim_param else f"{identifier(vi.name)}_{i}")
        return TensorType(tuple(dims), dtype)

    def value_of(self, name: str) -> Value:
        """Tensor ``name`` as an IR value; a known array becomes a ``const`` node on first use."""
        x = self._lookup(name)
        if isinstance(x, Value):
            return x
        if name in self._materialized:
            return self._materialized[name]
        if isinstance(x, SymShape):
            raise UnsupportedOpError(f"'{name}' is computed at run time from the symbolic dims "
                                f"{', '.join(x.symbols)}; the IR needs it static (import with static shapes)")
        try:
            DType.from_numpy(x.dtype)
        except ValueError:
            raise UnsupportedOpError(f"constant '{name}' has element type {x.dtype}") from None
        v = self.b.const(x, identifier(name, "c"))
        self._materialized[name] = v
        return v

    def _lookup(self, name: str) -> Value | Known:
        try:
            return self.env[name]
        except KeyError:
            raise FrontendError(f"tensor '{name}' is used before it is defined") from None

    # -- nodes -------------------------------------------------------------------------------------

    def _node(self, node: onnx.NodeProto) -> None:
        if node.domain not in _DEFAULT_DOMAINS:
            raise _node_error(node, f"unsupported op (domain {node.domain})", UnsupportedOpError)
        try:
            ins = [None if n == "" else self._lookup(n) for n in node.input]
            attrs = {a.name: _attr_value(a) for a in node.attribute}
            if node.op_type == "If":
                outs = self._inline_if(node, ins, attrs)
            else:
                outs = self._fold(node, ins, attrs)
            if outs is None:
                outs = self._convert(node, ins, attrs)
        except FrontendError as e:
            raise e.at_node(node.name or None, node.op_type)
        for i, name in enumerate(node.output):
            if not name:
                continue
            if i >= len(outs):
                if self.is_used(name):
                    raise _node_error(node, f"output {i} ('{name}') is not supported", UnsupportedOpError)
                continue
            self.env[name] = outs[i]
            self._check_type(node, name, outs[i])

    def _inline_if(self, node: onnx.NodeProto, ins: list[Value | Known | None], attrs: dict[str, Any]) -> list[Any]:
        """The branch an ``If`` takes, converted in place; its condition must be known."""
        cond = ins[0]
        if not isinstance(cond, np.ndarray):
            raise _node_error(node, "a condition computed at run time", UnsupportedOpError)
        branch: onnx.GraphProto = attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
        for t in branch.initializer:
            self.env[t.name] = numpy_helper.to_array(t)
        for inner in branch.node:
            self._node(inner)
        return [self._lookup(o.name) for o in branch.output]

    def _convert(self, node: onnx.NodeProto, ins: list[Value | Known | None], attrs: dict[str, Any]) -> list[Any]:
        conv = CONVERTERS.get(node.op_type)
        if conv is None:
            raise _node_error(node, "unsupported op", UnsupportedOpError)
        try:
            return list(conv(NodeCtx(self, node, ins, attrs)))
        except FrontendError:
            raise
        except (TypeError, ValueError) as e:  # the IR rejected the op: attributes or type inference
            raise _node_error(node, f"cannot convert: {e}") from e

    def _fold(self, node: onnx.NodeProto, ins: Sequence[Value | Known | None],
              attrs: dict[str, Any]) -> list[Any] | None:
        """The node's results when they are known at import time, else None."""
        op = node.op_type
        if op in ("Shape", "Size") and isinstance(ins[0], Value):
            shape = list(ins[0].type.shape)
            self._shape_sources.setdefault(tuple(shape), ins[0])
            if op == "Shape":
                return [make_known(shape[attrs.get("start", 0):attrs.get("end", None)])]
            n: int | str = 1
            for d in shape:
                n = n * d if isinstance(n, int) and isinstance(d, int) else f"({n}*{d})"
            return [make_known([n], scalar=True)]
        present = [x for x in ins if x is not None]
        if any(isinstance(x, Value) for x in present) or op in _NO_FOLD:
            return None
        if any(isinstance(x, SymShape) for x in present):
            return fold_symbolic(op, ins, attrs)
        if op == "Constant":
            return [_constant(node)]
        return self._evaluate(node, ins)

    def _evaluate(self, node: onnx.NodeProto, ins: Sequence[Known | None]) -> list[Any] | None:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: x for name, x in zip(node.input, ins) if name}
        try:
            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception:  # noqa: BLE001 - not foldable here (e.g. a function op): convert it instead
            return None
        return [np.asarray(r) for r in results]

    def _check_type(self, node: onnx.NodeProto, name: str, result: Value | Known) -> None:
        """Compare an IR result with ONNX's inferred type where both are static: a mismatch is a bug."""
        t = self._inferred.get(name)
        if not isinstance(result, Value) or t is None or not t.HasField("tensor_type"):
            return
        tt = t.tensor_type
        want = ir_dtype(tt.elem_type)
        if want is not None and tt.elem_type and want != result.type.dtype:
            raise _node_error(node, f"result '{name}' is {result.type} in the IR but {want} in ONNX")
        if tt.HasField("shape") and result.type.is_static:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if None not in dims and tuple(dims) != result.type.shape:
                raise _node_error(node, f"result '{name}' is {result.type} in the IR but has shape {dims} in ONNX")


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes of ``graph`` and of every sub-graph (If branches, loop bodies) inside it."""
    out = []
    for node in graph.node:
        out.append(node)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out.extend(_all_nodes(a.g))
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    out.extend(_all_nodes(sub))
    return out


def _constant(node: onnx.NodeProto) -> np.ndarray:
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name == "value_float":
        return np.array(a.f, dtype=np.float32)
    if a.name == "value_floats":
        return np.array(list(a.floats), dtype=np.float32)
    if a.name == "value_int":
        return np.array(a.i, dtype=np.int64)
    if a.name == "value_ints":
        return np.array(list(a.ints), dtype=np.int64)
    raise _node_error(node, f"unsupported constant attribute '{a.name}'", UnsupportedOpError)
