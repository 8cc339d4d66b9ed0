"""The IR: types, ops, graphs, text form, verifier and interpreter."""

from .annotations import BufferRef, Cost
from .graph import CONST, FUSED, Graph, GraphBuilder, Node, Value
from .opdef import AttrKind, FusionKind, OpDef, get_op
from .parser import IRParseError, load_ir, parse_ir, save_ir
from .printer import print_graph
from .types import DType, TensorType

__all__ = [
    "BufferRef", "CONST", "Cost", "DType", "FUSED", "FusionKind", "Graph", "GraphBuilder", "IRParseError",
    "AttrKind", "Node", "OpDef", "TensorType", "Value", "get_op", "load_ir", "parse_ir", "print_graph", "save_ir",
]
