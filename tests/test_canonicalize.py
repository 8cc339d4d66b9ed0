"""``canonicalize`` beyond the golden cases: big constants, limits, statistics, the rule engine,
and random graphs checked against the interpreter (numbers before == after)."""

from __future__ import annotations

import numpy as np
import pytest
from graphopt.ir.graph import CONST, Graph, GraphBuilder, Node, Value
from graphopt.ir.interpreter import run_graph
from graphopt.ir.parser import parse_ir
from graphopt.ir.printer import print_graph_with_constants
from graphopt.ir.types import DType, TensorType
from graphopt.ir.verify import verify
from graphopt.passes import PassContext, PassManager
from graphopt.passes.canonicalize import Canonicalize
from graphopt.passes.patterns import Const, Match, New, Op, Opt, Rule, Var
from graphopt.passes.rules import FOLDS, IDENTITIES

F32 = DType.f32


def t(*shape: int | str) -> TensorType:
    """An f32 tensor type."""
    return TensorType(tuple(shape), F32)


def checked(g: Graph) -> Graph:
    """``g`` after asserting that it verifies and round-trips through its text (with npz data)."""
    verify(g)
    text, consts = print_graph_with_constants(g)
    assert parse_ir(text, consts) == g
    return g


def canonicalize(g: Graph, **options: object) -> tuple[Graph, PassContext]:
    """Run the pass (verified) and check its result like every other graph."""
    ctx = PassContext()
    out = PassManager([Canonicalize(**options)]).run(checked(g), ctx)  # type: ignore[arg-type]
    return checked(out), ctx


def same_numbers(before: Graph, after: Graph, seed: int = 0, rtol: float = 1e-5) -> None:
    """The interpreter gives the same outputs for both graphs on random inputs."""
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal([d if isinstance(d, int) else 2 for d in v.type.shape]).astype(v.type.dtype.numpy)
              for v in before.inputs]
    for a, b in zip(run_graph(before, inputs), run_graph(after, inputs), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-5)


# ---- constants, limits and names


def test_equal_big_constants_merge_and_round_trip_through_npz() -> None:
    b = GraphBuilder("big")
    x = b.input("x", t(4, 8))
    w1 = b.const(np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8), "w1")
    w2 = b.const(np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8), "w2")
    w3 = b.const(np.linspace(0, 2, 32, dtype=np.float32).reshape(4, 8), "w3")
    y = b.op1("math.add", b.op1("math.mul", x, w1), b.op1("math.mul", x, w2))
    g = b.build([b.op1("math.sub", y, w3)])
    out, ctx = canonicalize(g)
    assert [n.output.name for n in out.nodes if n.op == CONST] == ["w1", "w3"]
    text, consts = print_graph_with_constants(out)
    assert sorted(consts) == ["w1", "w3"] and "@w1" in text
    assert ctx.stats["canonicalize"]["cse"] == 2  # the constant, then the multiply that now repeats
    same_numbers(g, out)


def test_folding_a_big_constant_keeps_its_name() -> None:
    b = GraphBuilder("fold_big")
    x = b.input("x", t(8, 4))
    w = b.const(np.arange(32, dtype=np.float32).reshape(4, 8), "w")
    wt = b.op("tensor.transpose", [w], names=["w_t"])[0]
    g = b.build([b.op1("math.mul", x, wt)])
    out, _ = canonicalize(g)
    assert [n.op for n in out.nodes] == [CONST, "math.mul"]
    assert out.nodes[0].output.name == "w_t"
    np.testing.assert_array_equal(out.nodes[0].value, np.arange(32, dtype=np.float32).reshape(4, 8).T)
    same_numbers(g, out)


def test_fold_that_would_blow_up_a_constant_is_skipped() -> None:
    b = GraphBuilder("expand")
    x = b.input("x", t(2000, 1000))
    c = b.const(np.float32(3.0), "c")
    big = b.op1("tensor.expand", c, shape=(2000, 1000))
    g = b.build([b.op1("math.add", x, big)])
    out, ctx = canonicalize(g)
    assert out.op_counts() == {"const": 1, "tensor.expand": 1, "math.add": 1}
    assert ctx.stats["canonicalize"]["fold-skipped-too-big"] == 1
    (why,) = ctx.decisions
    assert not why.accepted and why.subject == "fold tensor.expand -> f32[2000,1000]"
    assert "2000000 elements, made from 1 (max-fold-size=1000000)" in why.reason
    small = GraphBuilder("expand_small")
    xs = small.input("x", t(4, 2))
    cs = small.const(np.float32(3.0), "c")
    gs = small.build([small.op1("math.add", xs, small.op1("tensor.expand", cs, shape=(4, 2)))])
    outs, _ = canonicalize(gs, max_fold_size=8)
    assert outs.op_counts() == {"const": 1, "math.add": 1}
    same_numbers(gs, outs)


def test_input_graph_and_its_value_names_are_untouched() -> None:
    b = GraphBuilder("pure")
    x = b.input("x", t(3))
    z = b.const(np.zeros(3, np.float32), "c0")  # the name a builder would pick for a new constant
    one = b.const(np.float32(1.0), "c1")
    s = b.op1("math.add", b.const(np.ones(3, np.float32), "c2"), one)
    y = b.op1("math.mul", b.op1("math.add", x, z), s)
    g = b.build([y])
    text = g.to_text()
    names = [v.name for n in g.nodes for v in n.outputs]
    out, _ = canonicalize(g)
    assert g.to_text() == text and [v.name for n in g.nodes for v in n.outputs] == names
    assert out.inputs == g.inputs
    same_numbers(g, out)


def test_output_that_becomes_an_input_returns_the_input() -> None:
    b = GraphBuilder("passthrough")
    x = b.input("x", t(2))
    (y,) = b.op("tensor.identity", [x], names=["y"])
    out, _ = canonicalize(b.build([y]))
    assert out.outputs == (x,) and out.nodes == ()


def test_statistics_and_iterations() -> None:
    b = GraphBuilder("stats")
    x = b.input("x", t(2, 3))
    z = b.const(np.float32(0.0), "z")
    a = b.op1("nn.relu", b.op1("math.add", x, z))
    dup = b.op1("nn.relu", x)
    b.op1("math.exp", x)  # dead
    g = b.build([b.op1("math.mul", a, dup)])
    out, ctx = canonicalize(g)
    stats = ctx.stats["canonicalize"]
    assert stats["rule:add-zero"] == 1 and stats["cse"] == 1 and stats["iterations"] == 2
    assert stats["dce"] == 2  # the dead exp and the zero only the removed add read
    assert "rule:add-zero=1" in ctx.summary("canonicalize")
    _, again = canonicalize(out)
    assert dict(again.stats["canonicalize"]) == {"iterations": 1}


def test_max_iterations_bounds_the_sweeps() -> None:
    b = GraphBuilder("bounded")
    x = b.input("x", t(2))
    g = b.build([b.op1("nn.relu", b.op1("nn.relu", x))])
    out, ctx = canonicalize(g, max_iterations=1)
    assert ctx.stats["canonicalize"]["iterations"] == 1 and out.op_counts() == {"nn.relu": 1}


def test_fused_node_with_constant_operands_folds() -> None:
    inner = GraphBuilder("k0")
    a = inner.input("a", t(2))
    body = inner.build([inner.op1("math.exp", a)])
    b = GraphBuilder("fold_fused")
    x = b.input("x", t(2))
    c = b.const(np.array([0.0, 1.0], np.float32), "a")
    (k,) = b.fused("k0", [c], body)
    g = b.build([b.op1("math.add", x, k)])
    out, _ = canonicalize(g)
    assert out.op_counts() == {"const": 1, "math.add": 1}
    same_numbers(g, out)


def test_conv_bn_relu_network_numbers() -> None:
    rng = np.random.default_rng(3)
    b = GraphBuilder("convnet")
    x = b.input("x", t("B", 3, 8, 8))
    h = x
    for i, (cin, cout) in enumerate([(3, 8), (8, 8)]):
        w = b.const(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32), f"w{i}")
        bias = b.const(rng.standard_normal(cout).astype(np.float32), f"b{i}")
        h = b.op1("nn.conv2d", h, w, bias, pads=(1, 1, 1, 1))
        params = [rng.standard_normal(cout), rng.standard_normal(cout), rng.standard_normal(cout), rng.random(cout) + 0.5]
        p = [b.const(a.astype(np.float32), f"bn{i}_{k}") for k, a in zip(["g", "b", "m", "v"], params)]
        h = b.op1("nn.relu", b.op1("nn.batch_norm", h, *p))
    g = b.build([h])
    out, ctx = canonicalize(g)
    assert out.op_counts() == {"const": 4, "nn.conv2d": 2, "nn.relu": 2}
    assert ctx.stats["canonicalize"]["rule:conv-bn"] == 2
    same_numbers(g, out, rtol=1e-4)


# ---- the pattern engine


class _View:
    """Producers and use counts of a finished graph, for matching rules directly."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.uses = {v: 0 for n in g.nodes for v in n.outputs}
        for n in g.nodes:
            for v in n.inputs:
                self.uses[v] = self.uses.get(v, 0) + 1

    def producer(self, value: Value) -> Node | None:
        return self.g.producers().get(value)

    def use_count(self, value: Value) -> int:
        return self.uses.get(value, 0)


def test_patterns_bind_variables_constants_and_nodes() -> None:
    b = GraphBuilder("pat")
    x = b.input("x", t(3))
    c = b.const(np.full(3, 2.0, np.float32), "c")
    d = b.op1("math.sub", x, x)
    e = b.op1("math.sub", x, c)
    r = b.op1("nn.relu", e)
    g = checked(b.build([d, r]))
    view = _View(g)
    v = Var("v")
    same = Rule("sub-self", v - v, lambda m: New("math.mul", m.v, m.v))
    assert isinstance(same.apply(g.nodes[1], view)[0], New)  # x - x
    assert same.apply(g.nodes[2], view)[0] is None  # x - c
    assert Rule("sub-two", v - 2, v).apply(g.nodes[2], view)[0] is x
    assert Rule("sub-three", v - 3, v).apply(g.nodes[2], view)[0] is None
    inner = Rule("relu-sub", Op("nn.relu", Op("math.sub", v, Const("k"), name="s", one_use=True)), lambda m: m.s.output)
    rewrite, m = inner.apply(g.nodes[3], view)
    assert rewrite is e and isinstance(m, Match) and m.values["k"] is c
    np.testing.assert_array_equal(m.k, np.full(3, 2.0, np.float32))
    with pytest.raises(AttributeError, match="pattern bound no 'nope'"):
        _ = m.nope
    guarded = Rule("guarded", Op("nn.relu", v, where=lambda n: False), v)
    assert guarded.apply(g.nodes[3], view)[0] is None


def test_optional_operands_and_rule_tables() -> None:
    p = Op("nn.conv2d", Var("x"), Const("w"), Opt(Const("b")))
    assert p.required == 2 and len(p.args) == 3
    with pytest.raises(ValueError, match="optional operands must come last"):
        Op("nn.conv2d", Opt(Var("x")), Var("w"))
    names = [r.name for r in IDENTITIES + FOLDS]
    assert len(names) == len(set(names)), "rule names are counted in stats, so they must be unique"


def test_rewrite_with_the_wrong_type_is_not_applied() -> None:
    b = GraphBuilder("bcast")
    x = b.input("x", t(3))
    one = b.const(np.ones((2, 3), np.float32), "one")
    g = b.build([b.op1("math.mul", x, one)])  # x * 1 broadcasts to [2,3]: not x
    out, ctx = canonicalize(g)
    assert out == g and "rule:mul-one" not in ctx.stats["canonicalize"]


# ---- random graphs: numbers, round trip and fixed point


def random_graph(seed: int) -> Graph:
    """A small random graph mixing identities, duplicates, constant subgraphs and batch norms."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"random{seed}")
    pool = [b.input("x", t(2, 3)), b.input("y", t(3))]

    def const(shape: tuple[int, ...]) -> Value:
        kind = rng.integers(3)
        data = np.zeros(shape) if kind == 0 else np.ones(shape) if kind == 1 else rng.standard_normal(shape)
        return b.const(data.astype(np.float32))

    def pick() -> Value:
        return pool[rng.integers(len(pool))]

    for _ in range(14):
        a = pick()
        choice = rng.integers(9)
        if choice == 0:
            other = const([(), (3,), (2, 3)][rng.integers(3)]) if rng.random() < 0.6 else pick()
            args = (a, other) if rng.random() < 0.5 else (other, a)
            pool.append(b.op1(["math.add", "math.sub", "math.mul"][rng.integers(3)], *args))
        elif choice == 1:
            op = ["math.neg", "nn.relu", "tensor.identity", "nn.dropout", "math.tanh"][rng.integers(5)]
            pool.append(b.op1(op, a))
        elif choice == 2 and a.type.rank == 2:
            pool.append(b.op1("tensor.transpose", b.op1("tensor.transpose", a), perm=(1, 0)))
        elif choice == 3:
            flat = b.op1("tensor.reshape", a, shape=(-1,))
            pool.append(b.op1("tensor.reshape", flat, shape=a.type.shape))
        elif choice == 4:
            pool.append(b.op1("math.add", b.op1("math.exp", a), b.op1("math.exp", a)))
        elif choice == 5:
            c = b.op1("math.mul", const((3,)), const((3,)))
            pool.append(b.op1("math.add", a, b.op1("tensor.cast", c, to=F32)))
        elif choice == 6 and a.type.rank == 2:
            params = [const((3,)) for _ in range(3)] + [b.const((rng.random(3) + 0.5).astype(np.float32))]
            pool.append(b.op1("nn.batch_norm", a, *params))
        elif choice == 7 and a.type.rank == 2:
            w = b.const(rng.standard_normal((3, 3)).astype(np.float32))
            params = [const((3,)) for _ in range(3)] + [b.const((rng.random(3) + 0.5).astype(np.float32))]
            pool.append(b.op1("nn.batch_norm", b.op1("nn.matmul", a, w), *params))
        else:
            pool.append(b.op1("tensor.squeeze", b.op1("tensor.unsqueeze", a, axes=(0,)), axes=(0,)))
    return b.build([pool[-1], pool[len(pool) // 2]])


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_keep_their_numbers(seed: int) -> None:
    g = random_graph(seed)
    out, _ = canonicalize(g)
    same_numbers(g, out, seed=seed, rtol=1e-4)
    assert len(out.nodes) <= len(g.nodes)
    again, _ = canonicalize(out)
    assert again == out, "canonicalize is not at a fixed point"
