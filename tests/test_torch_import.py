"""PyTorch frontend: every test model and a zoo of single ATen ops imported, checked against torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from graphopt.frontends.errors import FrontendError, UnsupportedOpError
from graphopt.frontends.torch import import_torch
from graphopt.ir.graph import Graph
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph, print_graph_with_constants
from graphopt.ir.types import DType
from graphopt.ir.verify import verify

from model_utils import random_inputs, to_numpy, torch_outputs
from models import MODELS, make_model

RTOL, ATOL = 1e-4, 1e-5


def check_graph(g: Graph) -> None:
    """The graph verifies and its text form round-trips both ways."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    parsed = parse_ir(text, consts)
    assert parsed == g
    assert print_graph(parsed) == text


def assert_matches_torch(g: Graph, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    """The interpreter's outputs equal torch's eager outputs on ``inputs``."""
    want = torch_outputs(module, inputs)
    got = run_graph(g, to_numpy(inputs))
    assert len(got) == len(want)
    for g_out, w_out in zip(got, want):
        assert g_out.dtype == w_out.dtype
        assert g_out.shape == w_out.shape
        np.testing.assert_allclose(g_out, w_out, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(MODELS))
def test_model_imports_and_matches_torch(name: str) -> None:
    module, example = make_model(name)
    g = import_torch(module, example)
    check_graph(g)
    assert all(v.type.is_static for v in g.inputs)
    assert_matches_torch(g, module, example)
    assert_matches_torch(g, module, random_inputs(example, seed=7))


@pytest.mark.slow  # a dynamic-shape export takes 2-7 s per model on a loaded 2-core machine
@pytest.mark.parametrize("name", list(MODELS))
def test_dynamic_batch_keeps_symbol(name: str) -> None:
    module, example = make_model(name)
    g = import_torch(module, example, dynamic_batch=True)
    check_graph(g)
    assert all(v.type.shape[0] == "B" for v in g.inputs)
    assert all(v.type.shape[0] == "B" for v in g.outputs)
    for batch in (1, 3):
        assert_matches_torch(g, module, random_inputs(example, seed=batch, batch=batch))


def test_parameters_become_named_constants() -> None:
    module, example = make_model("resnet")
    g = import_torch(module, example)
    consts = {v.name: a for v, a in g.constants().items()}
    np.testing.assert_array_equal(consts["layer1_0_conv1_weight"], module.layer1[0].conv1.weight.detach().numpy())
    np.testing.assert_array_equal(consts["bn1_running_var"], module.bn1.running_var.numpy())
    assert g.name == "resnet"
    assert [v.name for v in g.inputs] == ["x"]
    ops = g.op_counts()
    assert ops["nn.conv2d"] == 15 and ops["nn.batch_norm"] == 15 and ops["nn.global_avg_pool"] == 1


def test_exported_program_is_accepted() -> None:
    module, example = make_model("mlp")
    g = import_torch(torch.export.export(module, example))
    check_graph(g)
    assert g.op_counts() == {"const": 6, "nn.gemm": 3, "nn.relu": 1, "nn.gelu": 1}
    assert_matches_torch(g, module, example)


def test_training_module_is_imported_in_eval_mode_and_left_as_it_was() -> None:
    module, example = make_model("mobilenet_v2")
    module.train()
    g = import_torch(module, example)
    assert module.training
    check_graph(g)
    assert_matches_torch(g, module.eval(), example)


class _Cumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).cumsum(dim=1)


def test_unsupported_op_names_the_fx_node_and_source_line() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        import_torch(_Cumsum(), (torch.randn(2, 4),))
    err = info.value
    assert err.node_name == "cumsum"
    assert err.op_type == "aten.cumsum.default"
    assert "node 'cumsum' (op aten.cumsum.default)" in str(err)
    assert "test_torch_import.py:" in str(err)


def test_missing_example_inputs_and_wrong_model_type_are_frontend_errors() -> None:
    with pytest.raises(FrontendError, match="needs example inputs"):
        import_torch(_Cumsum())
    with pytest.raises(FrontendError, match="nn.Module or ExportedProgram"):
        import_torch("model.pt", (torch.randn(1),))  # type: ignore[arg-type]


# --- single ops ----------------------------------------------------------------------------------


class _Fn(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> Any:
        return self.fn(*args)


def _r(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _causal_mask(q: torch.Tensor) -> torch.Tensor:
    return torch.tril(torch.ones(4, 4, dtype=torch.bool))


OP_CASES: dict[str, tuple[Callable[..., Any], tuple[torch.Tensor, ...]]] = {
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    (_r(1, 2, 4, 8), _r(1, 2, 4, 8, seed=1), _r(1, 2, 4, 8, seed=2))),
    "sdpa_bool_mask": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(q), scale=0.3),
                       (_r(1, 2, 4, 8), _r(1, 2, 4, 8, seed=1), _r(1, 2, 4, 8, seed=2))),
    "conv1d_prelu": (lambda x, w, s: F.prelu(F.conv1d(x, w, stride=2, padding=1), s),
                     (_r(1, 3, 10), _r(4, 3, 3, seed=1), torch.tensor([0.1, 0.2, 0.3, 0.4]))),
    "activations": (lambda x: F.hardswish(x) + F.hardsigmoid(x) + F.leaky_relu(x, 0.2) + F.elu(x, 0.5)
                    + F.softplus(x) + F.silu(x) + F.mish(x) + F.selu(x) + torch.sigmoid(x) + F.relu6(3 * x),
                    (_r(2, 8),)),
    "unary_math": (lambda x: torch.exp(x) + torch.log(x.abs() + 1) + torch.rsqrt(x.abs() + 1) + torch.erf(x)
                   + torch.sin(x) * torch.cos(x) + torch.floor(x) - torch.ceil(x) + torch.round(x) + torch.sign(x),
                   (_r(3, 5),)),
    "clamp_where_rsub": (lambda x: torch.where(x > 0, 1 - x, x.clamp(min=-0.5)) + x.clamp(-0.1, 0.1),
                         (_r(4, 4),)),
    "int_arith_and_compare": (lambda a, b: ((a * 3 + b) // 2 - (a != b).long(), torch.div(a, b + 10, rounding_mode="trunc")),
                              (torch.arange(12).reshape(3, 4), torch.arange(12).flip(0).reshape(3, 4))),
    "float_floor_div": (lambda x: torch.div(x, 0.3, rounding_mode="floor") + torch.div(x, 0.3, rounding_mode="trunc"),
                        (_r(3, 4),)),
    "logical": (lambda x: (x > 0) & ~(x > 1) | (x < -1), (_r(3, 4),)),
    "reductions": (lambda x: (x.sum(1), x.amax(dim=(0, 2), keepdim=True), x.mean(), x.amin(-1), x.prod(2)),
                   (_r(2, 3, 4),)),
    "max_argmax": (lambda x: (torch.max(x, dim=1), x.argmax(), x.argmin(dim=0, keepdim=True)), (_r(3, 5),)),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1) + F.softmax(x, dim=0), (_r(3, 5),)),
    "slicing": (lambda x: (x[:, 1:7:2], x[..., -3:], x[1], x[:, None, 2]), (_r(3, 8, 4),)),
    "index_select_index": (lambda x, i: (x.index_select(1, i), x[i]), (_r(4, 5), torch.tensor([3, 0, 1]))),
    "split_chunk_squeeze": (lambda x: (*x.split([1, 3], dim=1), *x.chunk(2, dim=2), x[:, :1].squeeze(1), x.squeeze(0)),
                            (_r(2, 4, 6),)),
    "repeat_expand_stack": (lambda x: (x.repeat(2, 1, 3), x[:, :1].expand(3, 4), torch.stack([x, x], 1)), (_r(3, 4),)),
    "pads": (lambda x: (F.pad(x, (1, 2, 0, 1), value=0.5), F.pad(x, (2, 1, 1, 2), mode="reflect"),
                        F.pad(x, (1, 1, 2, 0), mode="replicate")), (_r(1, 2, 5, 6),)),
    "tril_triu_full": (lambda x: torch.tril(x, -1) + torch.triu(x, 1) + torch.ones(4, 4) * 2, (_r(4, 4),)),
    "pooling": (lambda x: (F.adaptive_avg_pool2d(x, 2), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                           F.max_pool2d(x, 3, 2, ceil_mode=True), F.local_response_norm(x, 3)), (_r(1, 4, 8, 8),)),
    "layer_norm_no_affine": (lambda x: F.layer_norm(x, (4, 5)), (_r(2, 4, 5),)),
    "linear_3d_no_bias": (lambda x, w: F.linear(x, w), (_r(2, 3, 4), _r(6, 4, seed=1))),
    "addmm_bmm": (lambda a, b, c: (torch.addmm(c, a, b, beta=0.5, alpha=2.0), torch.bmm(a[None], b[None])),
                  (_r(3, 4), _r(4, 5, seed=1), _r(5, seed=2))),
    "type_casts": (lambda x: (x.to(torch.float64) * 2, x.half().float(), (x > 0).to(torch.int32)), (_r(3, 4),)),
    "pow_sqrt": (lambda x: torch.pow(x.abs(), 1.5) + torch.sqrt(x.abs()) + 2 ** x + x.pow(2), (_r(3, 4),)),
}


@pytest.mark.parametrize("case", list(OP_CASES))
def test_single_ops_match_torch(case: str) -> None:
    fn, inputs = OP_CASES[case]
    module = _Fn(fn).eval()
    g = import_torch(module, inputs)
    check_graph(g)
    assert_matches_torch(g, module, inputs)


def test_sdpa_is_written_out_with_matmul_and_softmax() -> None:
    fn, inputs = OP_CASES["sdpa_causal"]
    g = import_torch(_Fn(fn), inputs)
    ops = g.op_counts()
    assert ops["nn.matmul"] == 2 and ops["nn.softmax"] == 1


def test_symbolic_full_like_follows_the_batch() -> None:
    module = _Fn(lambda x: x + torch.full_like(x, 2.5) * torch.zeros_like(x[:, :1]))
    g = import_torch(module, (_r(1, 3),), dynamic_batch=True)
    check_graph(g)
    assert g.inputs[0].type.shape == ("B", 3)
    x = _r(4, 3, seed=3)
    np.testing.assert_allclose(run_graph(g, [x.numpy()])[0], x.numpy(), rtol=RTOL, atol=ATOL)


def test_bf16_and_int_inputs_keep_their_dtypes() -> None:
    module = _Fn(lambda x, i: (x * 2, i + 1))
    g = import_torch(module, (_r(2, 3).bfloat16(), torch.arange(4, dtype=torch.int32)))
    check_graph(g)
    assert [v.type.dtype for v in g.inputs] == [DType.bf16, DType.i32]
    assert [v.type.dtype for v in g.outputs] == [DType.bf16, DType.i32]


def test_gelu_tanh_and_scaled_masks_keep_values() -> None:
    module = _Fn(lambda x: F.gelu(x, approximate="tanh") * (1.0 / math.sqrt(8)))
    g = import_torch(module, (_r(2, 8),))
    check_graph(g)
    gelu = next(n for n in g.nodes if n.op == "nn.gelu")
    assert gelu.attrs["approximate"] == "tanh"
    assert_matches_torch(g, module, (_r(2, 8, seed=4),))


def test_local_response_norm_becomes_one_lrn_op() -> None:
    module, example = make_model("vgg")
    g = import_torch(module, example, dynamic_batch=True)
    ops = g.op_counts()
    assert ops["nn.lrn"] == 2
    assert "nn.avg_pool2d" not in ops and "math.pow" not in ops
    lrn = next(n for n in g.nodes if n.op == "nn.lrn")
    assert dict(lrn.attrs) == {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 2.0}


def test_even_size_lrn_stays_decomposed_and_exact() -> None:
    # torch's window for an even size starts one channel earlier than ONNX LRN's: not an nn.lrn.
    module = _Fn(lambda x: F.local_response_norm(x, 4, alpha=0.01, k=1.5))
    inputs = (_r(1, 6, 5, 5),)
    g = import_torch(module, inputs)
    check_graph(g)
    assert "nn.lrn" not in g.op_counts()
    assert_matches_torch(g, module, inputs)
