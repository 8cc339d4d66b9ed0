"""graphopt: a graph compiler for neural networks with a readable IR.

    import graphopt
    m = graphopt.compile("model.onnx")          # or an nn.Module with example inputs
    y = m(x)
    print(m.report().to_text())
    print(m.graph.to_text())
"""

__version__ = "0.1.0"

from .api import CompiledModel, compile, load  # noqa: E402
from .frontends import export_onnx, import_model, import_onnx, import_torch  # noqa: E402
from .ir import DType, Graph, GraphBuilder, TensorType, parse_ir  # noqa: E402

__all__ = [
    "CompiledModel", "DType", "Graph", "GraphBuilder", "TensorType", "compile", "export_onnx", "import_model",
    "import_onnx", "import_torch", "load", "parse_ir",
]
