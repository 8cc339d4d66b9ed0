"""PyTorch frontend: ``torch.export`` an ``nn.Module``, decompose to ATen, and walk the FX graph into IR.

The walk keeps a map from FX nodes to what they stand for in the IR: a ``Value`` (a tensor), a
tuple of them (multi-result ops, read through ``getitem``), or a Python scalar / IR dim (shape
arithmetic such as ``sym_size``, which is folded here and never becomes a node). Each ATen op is
converted by one function in ``aten_ops.py``; the result type of every converted node is checked
against the shape and dtype torch recorded for it, so a mapping mistake is caught at the node that
made it.

Parameters and buffers become named constants (``layer1.0.conv1.weight`` -> ``%layer1_0_conv1_weight``),
emitted where they are first used. A dynamic batch stays the symbol ``B``.
"""

from __future__ import annotations

import contextlib
import operator
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from ..ir.graph import Graph, GraphBuilder, Value
from ..ir.types import Dim, DType, TensorType
from .errors import FrontendError, UnsupportedOpError
from .torch_patterns import find_lrn

Result = Any  # Value | tuple[Value | None, ...] | Python scalar | IR dim | None

_TORCH_TO_DTYPE: dict[torch.dtype, DType] = {
    torch.float32: DType.f32,
    torch.float16: DType.f16,
    torch.bfloat16: DType.bf16,
    torch.float64: DType.f64,
    torch.int8: DType.i8,
    torch.uint8: DType.u8,
    torch.int32: DType.i32,
    torch.int64: DType.i64,
    torch.bool: DType.bool,
}
_DTYPE_TO_TORCH = {v: k for k, v in _TORCH_TO_DTYPE.items()}

# ATen ops kept whole instead of decomposed: each maps onto one IR op (or a short, clearer
# sequence) where the core-ATen decomposition would give a longer, lower-level one (for example
# matmul on 3-D operands becomes expand/view/bmm/view with batch dims multiplied together, which
# a symbolic batch cannot express).
_PRESERVED = (
    "linear.default", "matmul.default", "scaled_dot_product_attention.default", "silu.default",
    "hardswish.default", "hardsigmoid.default", "mish.default", "softplus.default", "relu6.default",
    "selu.default", "prelu.default", "adaptive_avg_pool2d.default", "reflection_pad2d.default",
    "replication_pad2d.default",
)


def to_dtype(dtype: torch.dtype, what: str = "tensor") -> DType:
    """The IR dtype of a torch dtype; FrontendError for the ones the IR lacks."""
    try:
        return _TORCH_TO_DTYPE[dtype]
    except KeyError:
        raise FrontendError(f"{what} has dtype {dtype}, which graphopt does not support") from None


def to_torch_dtype(dtype: DType) -> torch.dtype:
    """The torch dtype of an IR dtype."""
    return _DTYPE_TO_TORCH[dtype]


def tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a numpy array, sharing memory where it can (bfloat16 goes through float32, exactly)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(DType.bf16.numpy)
    return t.numpy()


def sanitize(name: str) -> str:
    """An IR value name for a torch name: ``layer1.0.conv1.weight`` -> ``layer1_0_conv1_weight``."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if out and (out[0].isalnum() or out[0] == "_") else f"v_{out}"


def decomposition_table() -> dict[Any, Callable[..., Any]]:
    """The core-ATen decompositions minus the ops in ``_PRESERVED`` (which are converted whole)."""
    table = torch.export.default_decompositions()
    for name in _PRESERVED:
        packet, overload = name.split(".")
        op = getattr(getattr(torch.ops.aten, packet), overload)
        if op in table:
            del table[op]
    return table


def export_module(
    module: torch.nn.Module, example_inputs: Sequence[Any], dynamic_batch: bool = False
) -> ExportedProgram:
    """``torch.export`` the module in eval mode (its mode is restored), batch dim dynamic if asked.

    torch specializes a dim whose example size is 1, so with ``dynamic_batch`` a batch-1 example is
    repeated to batch 2 for tracing; the graph is the same for every batch size.
    """
    args = tuple(example_inputs)
    dynamic_shapes = None
    if dynamic_batch:
        args = tuple(torch.cat([a, a]) if _has_batch(a) and a.shape[0] == 1 else a for a in args)
        # Keyed by tensor, so it fits any forward signature (*args included).
        dynamic_shapes = torch.export.ShapesCollection()
        batch = torch.export.Dim("B")
        for a in args:
            if _has_batch(a):
                dynamic_shapes[a] = {0: batch}
    was_training = module.training
    module.eval()
    try:
        with _quiet_torch_internals():
            return torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
    except Exception as e:  # torch raises many types here; the user needs the message, with context
        raise FrontendError(f"torch.export failed for {type(module).__name__}: {e}") from e
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _quiet_torch_internals() -> Iterator[None]:
    # torch 2.13 deep-copies its own pytree specs and then warns about its own deprecated LeafSpec
    # check, once per export and per decomposition: nothing a user can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        yield


def _has_batch(a: Any) -> bool:
    return isinstance(a, torch.Tensor) and a.dim() > 0


def import_exported_program(
    ep: ExportedProgram, name: str = "main", input_names: Sequence[str] | None = None
) -> Graph:
    """Decompose ``ep`` to the ATen ops the converters know and walk it into an IR graph."""
    try:
        with _quiet_torch_internals():
            ep = ep.run_decompositions(decomposition_table())
    except Exception as e:
        raise FrontendError(f"ATen decomposition of the exported program failed: {e}") from e
    return _Importer(ep, sanitize(name), input_names).run()


class ImportContext:
    """What an ATen converter sees: the node being converted and helpers to emit IR for it."""

    def __init__(self, builder: GraphBuilder, symbols: dict[Any, str]) -> None:
        self.b = builder
        self.symbols = symbols
        self.node: torch.fx.Node | None = None

    @property
    def target(self) -> str:
        """The current node's ATen overload, e.g. ``aten.add.Tensor``."""
        assert self.node is not None
        return target_name(self.node.target)

    @property
    def meta_val(self) -> Any:
        """What torch recorded for the current node's result (FakeTensor, tuple, SymInt …)."""
        assert self.node is not None
        return self.node.meta.get("val")

    # --- errors ----------------------------------------------------------------------------------

    def unsupported(self, reason: str) -> UnsupportedOpError:
        """An error naming the current node and its ATen op (raise it)."""
        node = self.node
        assert node is not None
        where = source_location(node)
        return UnsupportedOpError(
            reason + (f" ({where})" if where else ""), node_name=node.name, op_type=target_name(node.target)
        )

    # --- types -----------------------------------------------------------------------------------

    def dim(self, d: Any) -> Dim:
        """An IR dim for a torch size (int or SymInt); symbols are named, expressions rejected."""
        if isinstance(d, int):
            return d
        if isinstance(d, torch.SymInt):
            expr = d.node.expr
            if expr.is_Integer:
                return int(expr)
            if expr.is_Symbol:
                return self.symbols.setdefault(expr, f"d{len(self.symbols)}")
            raise self.unsupported(f"dimension {expr} is an expression of symbols; the IR has only plain symbols")
        raise self.unsupported(f"size {d!r} is not an int")

    def shape(self, sizes: Sequence[Any]) -> tuple[Dim, ...]:
        """IR dims of a torch shape."""
        return tuple(self.dim(d) for d in sizes)

    def meta_type(self, val: Any) -> TensorType:
        """The IR type of a tensor recorded by torch (a FakeTensor in ``node.meta['val']``)."""
        if not isinstance(val, torch.Tensor):
            raise self.unsupported(f"expected a tensor result, torch recorded {type(val).__name__}")
        if val.dtype not in _TORCH_TO_DTYPE:
            raise self.unsupported(f"dtype {val.dtype} has no graphopt DType")
        return TensorType(self.shape(val.shape), to_dtype(val.dtype))

    def out_type(self, index: int | None = None) -> TensorType:
        """The IR type torch recorded for the current node's result (``index``-th of a tuple)."""
        val = self.meta_val
        return self.meta_type(val if index is None else val[index])

    # --- emitting --------------------------------------------------------------------------------

    def op(self, name: str, *inputs: Value, **attrs: Any) -> Value:
        """Emit a one-result IR op."""
        (out,) = self.ops(name, inputs, attrs)
        return out

    def ops(self, name: str, inputs: Sequence[Value], attrs: Mapping[str, Any] | None = None) -> tuple[Value, ...]:
        """Emit an IR op and return all its results; IR type errors name the FX node."""
        try:
            return self.b.op(name, list(inputs), dict(attrs or {}))
        except (TypeError, ValueError) as e:
            raise self.unsupported(f"{name}: {e}") from e

    def const(self, data: Any, dtype: DType | None = None, name: str | None = None) -> Value:
        """Emit a constant (a scalar or array) of ``dtype``."""
        arr = np.asarray(data, dtype=dtype.numpy if dtype is not None else None)
        return self.b.const(arr, name)

    def cast(self, v: Value, dtype: DType) -> Value:
        """``v`` converted to ``dtype`` (``v`` itself when it already is)."""
        return v if v.type.dtype == dtype else self.op("tensor.cast", v, to=dtype)

    def tensor(self, x: Any, dtype: DType) -> Value:
        """An operand of ``dtype``: a Value (cast if needed) or a Python scalar made a constant."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        if isinstance(x, (bool, int, float)):
            return self.const(x, dtype)
        raise self.unsupported(f"operand {x!r} is neither a tensor nor a number")

    def result_dtype(self, a: Any, b: Any) -> DType:
        """The dtype torch's type promotion gives for ``a op b`` (tensors or Python scalars)."""
        return to_dtype(torch.result_type(_dummy(a), _dummy(b)))

    def reshape(self, v: Value, shape: Sequence[Dim]) -> Value:
        """``v`` reshaped to ``shape``; a symbolic dim becomes 0 (same as the input's) or -1."""
        if tuple(shape) == v.type.shape:
            return v
        spec: list[int] = []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                spec.append(d)
            elif i < v.type.rank and v.type.shape[i] == d:
                spec.append(0)
            elif -1 not in spec:
                spec.append(-1)
            else:
                raise self.unsupported(f"reshape of {v.type} to {list(shape)} has two dims that are not known")
        if any(d == 0 for d in shape):
            # In the IR's reshape spec 0 means "copy the input dim", so an empty dim cannot be said.
            raise self.unsupported(f"reshape of {v.type} to {list(shape)}, which has an empty dim")
        return self.op("tensor.reshape", v, shape=spec)

    def full(self, value: Any, out: TensorType, like: Value | None = None) -> Value:
        """A tensor of ``out`` type filled with ``value``: a constant when static, else shaped like ``like``."""
        if out.is_static:
            return self.const(np.full(out.shape, value, dtype=out.dtype.numpy))
        if like is None or like.type.shape != out.shape:
            raise self.unsupported(f"cannot build a {out} tensor: its shape is symbolic")
        # where(cond, c, c) is c broadcast to cond's (symbolic) shape, for any data in ``like``.
        c = self.const(value, out.dtype)
        return self.op("tensor.where", self.op("cmp.equal", like, like), c, c)


def _dummy(x: Any) -> Any:
    # torch.result_type distinguishes 0-d from n-d tensors and tensors from Python numbers.
    if isinstance(x, Value):
        return torch.empty((1,) * x.type.rank, dtype=to_torch_dtype(x.type.dtype))
    return x


def _is_number(val: Any) -> bool:
    # sym_size, add.default on SymInts …: shape arithmetic that folds instead of becoming IR.
    return isinstance(val, (bool, int, float, torch.SymInt, torch.SymFloat, torch.SymBool))


def target_name(target: Any) -> str:
    """``aten.add.Tensor`` for an OpOverload, the qualified name for other callables."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    mod = getattr(target, "__module__", None) or ""
    return f"{mod}.{getattr(target, '__name__', str(target))}".lstrip(".")


def source_location(node: torch.fx.Node) -> str:
    """``file.py:42`` of the model code that made ``node``, from torch's recorded stack trace."""
    trace = node.meta.get("stack_trace") or ""
    found = re.findall(r'File "([^"]+)", line (\d+)', trace)
    if not found:
        return ""
    path, line = found[-1]
    return f"{path.rsplit('/', 1)[-1]}:{line}"


class _Importer:
    def __init__(self, ep: ExportedProgram, name: str, input_names: Sequence[str] | None) -> None:
        self.ep = ep
        self.b = GraphBuilder(name)
        self.symbols: dict[Any, str] = {}
        self.ctx = ImportContext(self.b, self.symbols)
        self.env: dict[torch.fx.Node, Result] = {}
        self.lazy_consts: dict[torch.fx.Node, tuple[str, torch.Tensor]] = {}
        self.input_names = list(input_names) if input_names is not None else None

    def run(self) -> Graph:
        from .aten_ops import CONVERTERS, IGNORED

        self._signature()
        lrn = find_lrn(self.ep.graph)
        folded = set().union(*(m.inner for m in lrn.values()))
        for node in self.ep.graph.nodes:
            self.ctx.node = node
            if node.op in ("placeholder", "output") or node in folded:
                continue
            if node in lrn:
                m = lrn[node]
                self.env[node] = self.ctx.op("nn.lrn", self.value_of(m.x), size=m.size, alpha=m.alpha,
                                             beta=m.beta, bias=m.bias)
                self._check(node, self.env[node])
                continue
            if node.op != "call_function":
                raise self.ctx.unsupported(f"FX node kind {node.op} is not supported")
            key = target_name(node.target)
            if key in IGNORED:
                continue
            if node.target is operator.getitem:
                self.env[node] = self._getitem(node)
                continue
            if not isinstance(node.target, torch._ops.OpOverload) or _is_number(node.meta.get("val")):
                self.env[node] = self._scalar(node)
                continue
            conv = CONVERTERS.get(key)
            if conv is None:
                raise self.ctx.unsupported(f"no IR mapping for ATen op {key}")
            args = self._bind(node)
            result = conv(self.ctx, args)
            self._check(node, result)
            self.env[node] = result
        return self.b.build(self._outputs())

    # --- inputs and constants --------------------------------------------------------------------

    def _signature(self) -> None:
        sig = self.ep.graph_signature
        placeholders = {n.name: n for n in self.ep.graph.nodes if n.op == "placeholder"}
        user = [placeholders[s.arg.name] for s in sig.input_specs if s.kind == InputKind.USER_INPUT]
        # Numbers passed as inputs were specialized by torch.export: they are constants, not inputs.
        for node in user:
            val = node.meta.get("val")
            if isinstance(val, (bool, int, float)):
                self.env[node] = val
        tensors = [n for n in user if n not in self.env]
        names = self.input_names or [n.name for n in tensors]
        if len(names) != len(tensors):
            raise FrontendError(f"{len(names)} input names given for {len(tensors)} tensor inputs")
        self._name_symbols(tensors)
        for node, name in zip(tensors, names):
            self.ctx.node = node
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                raise self.ctx.unsupported(f"input '{name}' is a {type(val).__name__}, not a tensor")
            self.env[node] = self.b.input(sanitize(name), self.ctx.meta_type(val))
        for spec in sig.input_specs:
            if spec.kind == InputKind.USER_INPUT:
                continue
            node = placeholders[spec.arg.name]
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                target = str(spec.target)
                data = self.ep.state_dict.get(target)
                if data is None:
                    data = self.ep.constants[target]
                self.lazy_consts[node] = (sanitize(target), data)
            else:
                raise FrontendError(f"exported program input {spec.arg.name} of kind {spec.kind.name} is not supported")

    def _name_symbols(self, inputs: list[torch.fx.Node]) -> None:
        # A symbol first seen as a batch dim (axis 0) of an input is B (B1, B2 … if several).
        batch = 0
        for node in inputs:
            val = node.meta.get("val")
            for axis, d in enumerate(getattr(val, "shape", ())):
                if isinstance(d, torch.SymInt) and d.node.expr.is_Symbol and d.node.expr not in self.symbols:
                    if axis == 0:
                        self.symbols[d.node.expr] = "B" if batch == 0 else f"B{batch}"
                        batch += 1
                    else:
                        self.symbols[d.node.expr] = f"d{len(self.symbols)}"

    def value_of(self, arg: Any) -> Result:
        """What an FX argument stands for (constants of parameters are emitted at first use)."""
        if isinstance(arg, torch.fx.Node):
            if arg not in self.env:
                if arg in self.lazy_consts:
                    name, data = self.lazy_consts.pop(arg)
                    to_dtype(data.dtype, f"parameter {name}")
                    self.env[arg] = self.b.const(tensor_to_numpy(data), name)
                else:
                    raise FrontendError(f"FX node {arg.name} is used before it is defined")
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value_of(a) for a in arg)
        return arg

    def _bind(self, node: torch.fx.Node) -> dict[str, Any]:
        """The node's arguments by schema name, defaults filled in, FX nodes resolved."""
        schema = node.target._schema  # type: ignore[union-attr]
        out: dict[str, Any] = {}
        for i, a in enumerate(schema.arguments):
            if i < len(node.args):
                v = node.args[i]
            elif a.name in node.kwargs:
                v = node.kwargs[a.name]
            elif a.has_default_value():
                v = a.default_value
            else:
                v = None
            out[a.name] = self.value_of(v)
        return out

    # --- non-tensor nodes ------------------------------------------------------------------------

    def _getitem(self, node: torch.fx.Node) -> Result:
        seq, index = node.args
        got = self.value_of(seq)
        if not isinstance(got, (tuple, list)):
            raise self.ctx.unsupported(f"getitem on {type(got).__name__}")
        item = got[index]  # type: ignore[index]
        if item is None:
            producer = seq.target if isinstance(seq, torch.fx.Node) else seq
            raise self.ctx.unsupported(f"result {index} of {target_name(producer)} is not supported")
        return item

    def _scalar(self, node: torch.fx.Node) -> Result:
        # Shape arithmetic (sym_size, operator.mul on SymInts …) folds to the value torch recorded.
        val = node.meta.get("val")
        if isinstance(val, (bool, float)):
            return val
        if isinstance(val, (torch.SymInt, int)):
            try:
                return self.ctx.dim(val)
            except UnsupportedOpError:
                return val  # an expression: usable only where nothing needs it as a dim
        raise self.ctx.unsupported(f"no IR mapping for {target_name(node.target)}")

    # --- checks and outputs ----------------------------------------------------------------------

    def _check(self, node: torch.fx.Node, result: Result) -> None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            pairs = [(result, val)]
        elif isinstance(val, (tuple, list)) and isinstance(result, (tuple, list)):
            pairs = [(r, v) for r, v in zip(result, val) if r is not None]
        else:
            return
        for got, want in pairs:
            if not isinstance(got, Value):
                raise self.ctx.unsupported(f"converter gave {type(got).__name__} for a tensor result")
            expected = self.ctx.meta_type(want)
            if got.type != expected:
                raise self.ctx.unsupported(f"converted result is {got.type} but torch computes {expected}")

    def _outputs(self) -> list[Value]:
        sig = self.ep.graph_signature
        other = [s for s in sig.output_specs if s.kind != OutputKind.USER_OUTPUT]
        if other:
            what = ", ".join(f"{s.kind.name.lower()} of {s.target}" for s in other)
            raise FrontendError(f"the model mutates state ({what}); export it in eval mode without side effects")
        out_node = next(n for n in self.ep.graph.nodes if n.op == "output")
        self.ctx.node = out_node
        outs = []
        for arg in out_node.args[0]:
            v = self.value_of(arg)
            if not isinstance(v, Value):
                raise self.ctx.unsupported(f"model output {arg} is a {type(v).__name__}, not a tensor")
            outs.append(v)
        return outs
