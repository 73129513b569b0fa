"""The torch gradient check finds planted bugs in custom autograd.Functions and names the layer.

Two styles of Function are covered: the torch.func style (``setup_context`` and a generated vmap
rule, evaluated in one ``torch.func.vmap``) and the old ``forward(ctx, ...)`` style (which vmap
refuses, so directions are evaluated in a loop).
"""

from __future__ import annotations

import pytest
import torch

from diag.gradcheck.torch_check import check_torch, check_torch_module

BUGS = ("factor_one_element", "sign", "transposed", "missing_term")
GROSS = ("sign", "transposed", "missing_term")


def weight_grad(x, g, y, bug):
    d = g * (1 - y**2)
    dw = x.transpose(0, 1) @ d
    if bug == "factor_one_element":
        dw = dw.clone()
        dw[0, 0] *= 2
    elif bug == "sign":
        dw = -dw
    elif bug == "transposed":
        dw = dw.transpose(0, 1)
    elif bug == "missing_term":
        dw = x.transpose(0, 1) @ g
    return d, dw


def make_function(bug: str | None, style: str):
    """A tanh dense layer as a custom autograd.Function with ``bug`` planted in its weight gradient."""
    if style == "func":

        class Dense(torch.autograd.Function):
            generate_vmap_rule = True

            @staticmethod
            def forward(x, w, b):
                return torch.tanh(x @ w + b)

            @staticmethod
            def setup_context(ctx, inputs, output):
                x, w, _ = inputs
                ctx.save_for_backward(x, w, output)

            @staticmethod
            def backward(ctx, g):
                x, w, y = ctx.saved_tensors
                d, dw = weight_grad(x, g, y, bug)
                return d @ w.transpose(0, 1), dw, d.sum(0)

    else:

        class Dense(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b):
                y = torch.tanh(x @ w + b)
                ctx.save_for_backward(x, w, y)
                return y

            @staticmethod
            def backward(ctx, g):
                x, w, y = ctx.saved_tensors
                d, dw = weight_grad(x, g, y, bug)
                return d @ w.transpose(0, 1), dw, d.sum(0)

    return Dense


def make_loss(bug, style):
    good, planted = make_function(None, style), make_function(bug, style)

    def loss(params, x, y):
        h = good.apply(x, params["dense1"]["w"], params["dense1"]["b"])
        return (planted.apply(h, params["dense2"]["w"], params["dense2"]["b"]) - y).pow(2).mean()

    return loss


@pytest.fixture(scope="module")
def point():
    g = torch.Generator().manual_seed(0)
    params = {
        "dense1": {"w": torch.randn(12, 12, generator=g) / 12**0.5, "b": 0.1 * torch.randn(12, generator=g)},
        "dense2": {"w": torch.randn(12, 12, generator=g) / 12**0.5, "b": 0.1 * torch.randn(12, generator=g)},
    }
    return params, torch.randn(32, 12, generator=g), torch.randn(32, 12, generator=g)


@pytest.mark.parametrize("style", ["func", "ctx"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_autograd_function_passes(point, style, dtype):
    report = check_torch(make_loss(None, style), *point, dtype=dtype)
    assert report.passed, report.format()
    # passed is all() over the results: name them, so that a check of nothing cannot pass.
    assert sorted(r.name for r in report.results) == ["dense1/b", "dense1/w", "dense2/b", "dense2/w"]


@pytest.mark.parametrize("style", ["func", "ctx"])
@pytest.mark.parametrize("bug", BUGS)
def test_planted_bug_is_found_in_float64_and_names_the_layer(point, bug, style):
    report = check_torch(make_loss(bug, style), *point)
    assert [r.name for r in report.failures] == ["dense2/w"], report.format()
    assert "layer dense2" in report.failures[0].message


@pytest.mark.parametrize("bug", GROSS)
def test_gross_bug_is_found_in_float32(point, bug):
    report = check_torch(make_loss(bug, "func"), *point, dtype="float32")
    assert [r.name for r in report.failures] == ["dense2/w"], report.format()


def test_one_element_bug_points_at_that_element(point):
    report = check_torch(make_loss("factor_one_element", "func"), *point)
    assert report.failures[0].worst_elements[0] == [0, 0]


def test_vmap_style_function_is_batched_and_old_style_falls_back_to_a_loop(point):
    batched = check_torch(make_loss(None, "func"), *point)
    looped = check_torch(make_loss(None, "ctx"), *point)
    assert "torch.func.vmap" in batched.results[0].method and not batched.notes
    assert "loop" in looped.results[0].method and "could not batch" in looped.notes[0]


def test_module_check_names_parameters_by_module_path_and_leaves_module_unchanged():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    before = model[0].weight.detach().clone()
    x, labels = torch.randn(24, 6), torch.arange(24) % 3
    report = check_torch_module(model, lambda m, x, t: torch.nn.functional.cross_entropy(m(x), t), x, labels)
    assert report.passed, report.format()
    assert [r.name for r in report.results] == ["0/weight", "0/bias", "2/weight", "2/bias"]
    assert model[0].weight.dtype == torch.float32 and torch.equal(model[0].weight, before)


def test_no_false_alarm_over_many_random_correct_functions():
    # Random weights, data and activation mixes, including kinked ones (relu, abs).
    for i in range(100):
        g = torch.Generator().manual_seed(100 + i)
        params = {"l1": {"w": torch.randn(5, 20, generator=g), "b": torch.randn(20, generator=g)},
                  "l2": {"w": torch.randn(20, 2, generator=g) / 4}}
        c = torch.rand(4, generator=g) * 2 - 1
        x = torch.randn(16, 5, generator=g)

        def fn(p, x, c=c):
            z = x @ p["l1"]["w"] + p["l1"]["b"]
            h = c[0] * torch.relu(z) + c[1] * torch.tanh(z) + c[2] * z.abs() + c[3] * torch.nn.functional.softplus(z)
            return (h @ p["l2"]["w"]).pow(2).mean()

        report = check_torch(fn, params, x, seed=i, localize=False)
        assert report.passed, f"false alarm on draw {i}:\n{report.format()}"
        assert len(report.results) == 3, report.format()  # l1/w, l1/b, l2/w were all checked
