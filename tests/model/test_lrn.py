"""alexnet.model.lrn_kernels.local_response_norm (through model.lrn) against a slow, obviously correct reference and
against torch's LRN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alexnet.model import lrn_kernels as lrn
from alexnet.model.lrn import local_response_norm

pytestmark = pytest.mark.filterwarnings("error")  # e.g. torch's on resizing an out= tensor of the wrong shape

K, BETA = 2.0, 0.75
SCALES = (1e-4, 2e-5)  # alpha of the paper's convention, and alpha / n of cuda-convnet's


def reference_denominator(x: torch.Tensor, n: int, scale: float, k: float, groups: int) -> torch.Tensor:
    """d_i = k + scale * sum of x_j^2 over maps j in [i - n//2, i + n - 1 - n//2] of i's group, one map at a time."""
    per_group = x.shape[1] // groups
    maps = []
    for i in range(x.shape[1]):
        first = i - i % per_group  # the group's first and last map
        last = first + per_group - 1
        lo, hi = max(first, i - n // 2), min(last, i + n - 1 - n // 2)
        maps.append(k + scale * sum(x[:, j] ** 2 for j in range(lo, hi + 1)))
    return torch.stack(maps, 1)


def reference(x: torch.Tensor, n: int, scale: float, beta: float, k: float, groups: int) -> torch.Tensor:
    return x / reference_denominator(x, n, scale, k, groups) ** beta


def activations(kind: str, dtype: torch.dtype, shape=(3, 12, 5, 4), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = torch.relu(x * 50) if kind == "pixel" else x  # 0-255 scale (ReLU of conv1) or small, signed
    return x.to(dtype)


@pytest.fixture(params=["saved", "recompute", "blocked", "blocked-recompute"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ways the CPU code runs: the forward saves d and d^-beta, or the backward recomputes them; all rows
    at once, or in blocks of rows (4 rows of the 6 in a (3, 12, 5, 4) batch with groups=2: the last block
    is partial)."""
    if "recompute" in request.param:
        monkeypatch.setattr(lrn, "_RECOMPUTE_ELEMENTS", 0)
    if "blocked" in request.param:
        monkeypatch.setattr(lrn, "_BLOCK_ELEMENTS", 4 * 6 * 20 // torch.get_num_threads())
    return request.param


def compare(x: torch.Tensor, n: int, scale: float, groups: int, beta: float = BETA, **tol: float) -> None:
    """Output and input gradient of ours (in x's dtype) against the float64 reference of the same input."""
    x64 = x.detach().double().requires_grad_()
    x = x.detach().clone().requires_grad_()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = local_response_norm(x, n, scale, beta, K, groups)
    expected = reference(x64, n, scale, beta, K, groups)
    (grad_ours,) = torch.autograd.grad(ours, x, g.to(x.dtype))
    (grad_expected,) = torch.autograd.grad(expected, x64, g)
    assert ours.dtype == grad_ours.dtype == x.dtype
    torch.testing.assert_close(ours.double(), expected.detach(), **tol)
    torch.testing.assert_close(grad_ours.double(), grad_expected, **tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("kind", ["pixel", "small"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("n", [5, 4])
def test_matches_reference(n, groups, scale, kind, dtype, tol, path) -> None:
    x = activations(kind, dtype)
    d = reference_denominator(x.double(), n, scale, K, groups)
    if kind == "pixel":  # scale * S comparable to k: the normalisation does something, and differs map to map
        assert d.min() < 1.05 * K and d.max() > 1.2 * K
    else:  # d close to k, but not equal to it
        assert 0 < (d - K).max() < 0.01 * K
    if "blocked" in path:
        step = lrn._block_rows(x.reshape(x.shape[0] * groups, x.shape[1] // groups, -1))
        assert step < x.shape[0] * groups and (x.shape[0] * groups) % step  # several blocks, the last partial
    compare(x, n, scale, groups, rtol=tol, atol=tol)


@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 13])
def test_other_betas_and_window_sizes(n, beta) -> None:
    """Odd and even n, n = 1, windows wider than a group (13 > 6 maps), and beta off the 0.75 fast path."""
    compare(activations("pixel", torch.float64), n, 1e-4, 2, beta, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, groups", [(5, 1), (4, 2), (3, 3)])
def test_gradcheck(n, groups) -> None:
    x = activations("pixel", torch.float64, shape=(2, 6, 3, 2)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, n, 1e-4, BETA, K, groups), (x,))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("n", [5, 3])
def test_equals_torch_local_response_norm(n, dtype, tol) -> None:
    x = activations("pixel", dtype, shape=(4, 10, 6, 6)).requires_grad_()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    scale = 2e-5
    ours = local_response_norm(x, n, scale, BETA, K)
    theirs = F.local_response_norm(x, n, scale * n, BETA, K)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    torch.testing.assert_close(*(torch.autograd.grad(y, x, g)[0] for y in (ours, theirs)), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(dtype) -> None:
    """Computed in float32: output and gradient are the exact values rounded to dtype, to within one step."""
    x = activations("pixel", dtype).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    ours = local_response_norm(x, 5, 1e-4, BETA, K, 2)
    expected = reference(x64, 5, 1e-4, BETA, K, 2)
    (grad_ours,) = torch.autograd.grad(ours, x, g)
    (grad_expected,) = torch.autograd.grad(expected, x64, g.double())
    assert ours.dtype == grad_ours.dtype == dtype
    step = torch.finfo(dtype).eps  # one step of dtype, relative (at most)
    for got, exact in ((ours, expected), (grad_ours, grad_expected)):
        torch.testing.assert_close(got.double(), exact.detach().to(dtype).double(), rtol=step, atol=1e-6)


def test_non_contiguous_input_and_trailing_shapes() -> None:
    x = activations("pixel", torch.float64, shape=(3, 5, 4, 12)).transpose(1, 3)  # (3, 12, 4, 5), strided
    compare(x, 5, 1e-4, 2, rtol=1e-12, atol=1e-12)
    compare(x.flatten(2), 5, 1e-4, 2, rtol=1e-12, atol=1e-12)  # (batch, channels, length)


def test_no_spatial_dims_and_empty_tensors() -> None:
    compare(activations("pixel", torch.float64, shape=(3, 12)), 5, 1e-4, 2, rtol=1e-12, atol=1e-12)
    for shape in ((0, 12, 5, 5), (3, 12, 0, 5)):
        x = torch.ones(shape, requires_grad=True)
        local_response_norm(x, 5, 1e-4, BETA, K, 2).sum().backward()
        assert x.grad.shape == shape


def test_input_left_alone_and_gradient_accumulates() -> None:
    x = activations("pixel", torch.float32).requires_grad_()
    before = x.detach().clone()
    for _ in range(2):
        local_response_norm(x, 5, 1e-4, BETA, K, 2).sum().backward()
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)
    (once,) = torch.autograd.grad(local_response_norm(x, 5, 1e-4, BETA, K, 2).sum(), x)
    torch.testing.assert_close(x.grad, 2 * once)


def test_no_double_backward() -> None:
    x = activations("pixel", torch.float64).requires_grad_()
    (grad,) = torch.autograd.grad(local_response_norm(x, 5, 1e-4, BETA, K).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@pytest.mark.parametrize("shape, n, groups", [((2, 12, 3, 3), 5, 5), ((2, 12, 3, 3), 0, 1), ((12,), 5, 1)])
def test_rejects_bad_arguments(shape, n, groups) -> None:
    with pytest.raises(ValueError):
        local_response_norm(torch.ones(shape), n, 1e-4, BETA, K, groups)


@pytest.mark.filterwarnings("ignore")  # dynamo's own notices
def test_the_layer_compiled_equals_the_reference_in_float32() -> None:
    """speed.compile: the LRN layer as torch.compile traces it (the GPU path's formula, decomposed by AOT autograd
    as inductor would get it) keeps the reference's output and gradient in float32."""
    from alexnet.model.lrn import LocalResponseNorm

    layer = LocalResponseNorm(n=5, alpha=1e-4, beta=BETA, k=K, groups=2)
    layer.cpu_kernel = False  # the formula a GPU runs, which compile fuses there
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = activations("pixel", torch.float32).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    out = compiled(x)
    expected = reference(x64, 5, 1e-4 / 5, BETA, K, 2)  # the cuda-convnet convention: alpha / n per square
    (grad,) = torch.autograd.grad(out.sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x64)
    torch.testing.assert_close(out.double(), expected.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.double(), grad_expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("kind", ["pixel", "small"])
@pytest.mark.parametrize("groups, n", [(1, 5), (2, 5), (2, 4), (3, 7)])
def test_channels_last_matches_reference(n, groups, kind, dtype, tol) -> None:
    """speed.channels_last: an NHWC input takes the window-matrix kernel, the same function as the formula, and
    its output and input gradient stay NHWC (no copy into NCHW and back)."""
    x = activations(kind, dtype).contiguous(memory_format=torch.channels_last)
    assert lrn.channels_last(x)
    compare(x, n, SCALES[1], groups, rtol=tol, atol=tol)
    x.requires_grad_()
    out = local_response_norm(x, n, SCALES[1], BETA, K, groups)
    (grad,) = torch.autograd.grad(out.sum(), x)
    for t in (out, grad):
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def test_channels_last_half_precision_and_layer_dispatch() -> None:
    """The NHWC kernel computes half inputs in float32, and the layer sends an NHWC input to it on every path
    (also `cpu_kernel=False`, the branch a GPU takes): the same numbers as the NCHW kernel."""
    from alexnet.model.lrn import LocalResponseNorm

    x = activations("pixel", torch.float32, shape=(3, 12, 5, 4))
    layer = LocalResponseNorm(groups=2)
    expected = layer(x)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    for cpu_kernel in (True, False):
        layer.cpu_kernel = cpu_kernel
        out = layer(nhwc)
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-5)
    half = local_response_norm(nhwc.bfloat16(), 5, 2e-5, BETA, K, 2)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, rtol=torch.finfo(torch.bfloat16).eps, atol=1e-3)
