"""The fast LRN kernels behind model/lrn.py's LocalResponseNorm: forward and a hand-written, analytic backward.

The formula (lrn.py's docstring), with dL/db = g,

    dL/da_i = g_i d_i^-beta - 2 beta scale a_i sum_{j: i in window(j)} g_j a_j d_j^(-beta-1),

where j runs over the transposed window i - (n - 1 - n//2) ... i + n//2 (the mirror image for even n).

Why hand-written: no library offers a fast LRN backward on CPU. torch's F.local_response_norm gets the sum
from avg_pool3d and leaves the backward to autograd over a chain of unfused ops, each of which allocates and
fills whole tensors; the shifted sums LocalResponseNorm used on CPU do the same with slices. Here the forward
is a few elementwise passes and saves d and d^-beta, and the backward is the formula above in as many passes:
about 8x faster than torch's and 4x faster than the shifted sums at the embedded net's conv1 output on one
CPU thread (benchmarks/lrn.py). How:
- the window sum is n - 1 shifted-slice adds, measured faster on CPU than cumsum, avg_pool or conv, and
  exact where a difference of cumulative sums would cancel; a padded buffer holding k/n + scale * a^2 (k/n in
  the padding maps) gives d itself from that one sum;
- d^-0.75, the paper's beta, comes from two rsqrt and a division, 4x faster than pow on CPU;
- on CPU, rows are processed in blocks that stay in cache, writing into preallocated outputs, with each
  block's temporaries reused by the next. Pure torch ops otherwise: the same code runs on any device.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

__all__ = ["local_response_norm", "channels_last"]

# On CPU, rows of (maps x pixels) are processed in blocks of about this many elements per thread (4 MiB of
# float32), so that the dozen elementwise passes over a block hit the cache rather than memory. Smaller blocks
# were up to 10% faster on an idle core (1 << 18: 7.2 against 7.8 ms at 128x24x23x23 on one thread), but each
# op is a parallel region, and on a 2-core machine shared with other processes every region can wait a whole
# time slice for its second thread: there 4x more blocks made the layer 3x slower (580 against 176 ms).
_BLOCK_ELEMENTS = 1 << 20
# Above this many elements (32 MiB of float32, where glibc hands out fresh pages for every tensor) the CPU
# forward saves only its input and the backward recomputes d block by block, in cache: cheaper than writing
# and reading back two more tensors that size. Measured on one thread: 323 against 406 ms at 128x96x55x55 and
# 113 against 131 ms at 128x96x31x31, but 41 against 24 ms at 128x48x31x31 (6M elements).
_RECOMPUTE_ELEMENTS = 1 << 23
_HALF = (torch.float16, torch.bfloat16)


def local_response_norm(x: torch.Tensor, n: int, scale: float, beta: float, k: float, groups: int = 1) -> torch.Tensor:
    """LRN of x (batch, channels, *spatial) over windows of n maps within each of `groups` groups of channels.

    Per group the same function as `F.local_response_norm(x, n, scale * n, beta, k)`. Half-precision inputs
    are computed in float32 and returned in their own dtype. Differentiable once (no double backward).
    """
    if x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"local_response_norm: x must be floating (batch, channels, ...), got {x.dtype} {x.shape}")
    if n < 1 or groups < 1 or x.shape[1] % groups:
        raise ValueError(f"local_response_norm: n={n}, groups={groups} for {x.shape[1]} channels")
    args = (int(n), float(scale), float(beta), float(k), int(groups))
    if channels_last(x):
        return _ChannelsLastLRN.apply(x, *args)
    return _LocalResponseNorm.apply(x, *args)


def channels_last(x: torch.Tensor) -> bool:
    """NHWC in memory (and not also NCHW, as a 1x1 map or a single channel is)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _block_rows(a: torch.Tensor) -> int:
    rows, c, length = a.shape
    if a.device.type != "cpu":
        return max(1, rows)
    return max(1, min(rows, _BLOCK_ELEMENTS * torch.get_num_threads() // max(1, c * length)))


def _first(buf: torch.Tensor, rows: int) -> torch.Tensor:
    return buf if rows == buf.shape[0] else buf[:rows]


class _Padded:
    """A (rows, front + maps + back, pixels) buffer whose front and back maps hold `value`, with views of its
    maps and of its n windows, made once (a block of fewer rows takes the first rows of each)."""

    def __init__(self, a: torch.Tensor, rows: int, front: int, back: int, value: float, n: int) -> None:
        c = a.shape[1]
        self.buf = a.new_empty(rows, front + c + back, a.shape[2])
        self.buf[:, :front].fill_(value)
        self.buf[:, front + c :].fill_(value)
        self.value = a.new_full((), value)
        self.maps = self.buf[:, front : front + c]
        self.windows = [self.buf[:, i : i + c] for i in range(n)]

    def first(self, rows: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if rows == self.buf.shape[0]:
            return self.maps, self.windows
        return self.maps[:rows], [w[:rows] for w in self.windows]


def _window_sum(windows: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """The sum of the n shifted views of one padded buffer: n - 1 passes, into out."""
    if len(windows) == 1:
        return out.copy_(windows[0])
    torch.add(windows[0], windows[1], out=out)
    for window in windows[2:]:
        out += window
    return out


def _neg_pow(d: torch.Tensor, beta: float, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """d^-beta. The paper's beta = 0.75 as rsqrt(d) / rsqrt(rsqrt(d)): 4x faster than pow on CPU, and
    faster than rsqrt(d * sqrt(d)) (torch's sqrt is slower than its rsqrt there), within 5e-7 relative."""
    if beta == 0.75:
        torch.rsqrt(d, out=out)  # d^-1/2
        torch.rsqrt(out, out=scratch)  # d^1/4
        return out.div_(scratch)
    if beta == 0.5:
        return torch.rsqrt(d, out=out)
    return torch.pow(d, -beta, out=out)


def _denominator(a: torch.Tensor, padded: _Padded, scale: float, beta: float, d: torch.Tensor, p: torch.Tensor) -> None:
    """d = k + scale * (window sum of a^2) and p = d^-beta for a block of rows a.

    `padded` has n//2 front and n - 1 - n//2 back maps holding k/n, and every map gets k/n + scale * a^2:
    each window of n entries then adds up to d, in one window sum.
    """
    maps, windows = padded.first(a.shape[0])
    torch.addcmul(padded.value, a, a, value=scale, out=maps)
    _window_sum(windows, d)
    _neg_pow(d, beta, p, scratch=maps)  # the maps are free once summed


class _LocalResponseNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int, scale: float, beta: float, k: float, groups: int) -> torch.Tensor:
        shape = x.shape
        a = x.reshape(shape[0] * groups, shape[1] // groups, math.prod(shape[2:]))
        a = (a.float() if a.dtype in _HALF else a).contiguous()
        step = _block_rows(a)
        a_blocks = a.split(step)
        out = torch.empty_like(a)
        padded = _Padded(a, step, n // 2, n - 1 - n // 2, k / n, n)
        if a.device.type == "cpu" and a.numel() > _RECOMPUTE_ELEMENTS:
            d_buf, p_buf = a.new_empty(step, *a.shape[1:]), a.new_empty(step, *a.shape[1:])
            d_blocks = [_first(d_buf, len(b)) for b in a_blocks]
            p_blocks = [_first(p_buf, len(b)) for b in a_blocks]
            ctx.save_for_backward(a)
        else:
            d, p = torch.empty_like(a), torch.empty_like(a)
            d_blocks, p_blocks = d.split(step), p.split(step)
            ctx.save_for_backward(a, d, p)
        for a_block, d_block, p_block, out_block in zip(a_blocks, d_blocks, p_blocks, out.split(step), strict=True):
            _denominator(a_block, padded, scale, beta, d_block, p_block)
            torch.mul(a_block, p_block, out=out_block)
        ctx.lrn = (n, scale, beta, k, shape, x.dtype)
        return out.to(x.dtype).reshape(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, *saved = ctx.saved_tensors
        n, scale, beta, k, shape, dtype = ctx.lrn
        g = grad.reshape(a.shape).to(a.dtype)
        step = _block_rows(a)
        a_blocks = a.split(step)
        front, back = n // 2, n - 1 - n // 2
        if saved:
            d_blocks, p_blocks = saved[0].split(step), saved[1].split(step)
        else:  # recomputed block by block
            d_padded = _Padded(a, step, front, back, k / n, n)
            d_buf, p_buf = a.new_empty(step, *a.shape[1:]), a.new_empty(step, *a.shape[1:])
            d_blocks = [_first(d_buf, len(b)) for b in a_blocks]
            p_blocks = [_first(p_buf, len(b)) for b in a_blocks]
        # t_j = g_j a_j d_j^(-beta-1) between `back` and `front` zero maps: the transposed window
        t_padded = _Padded(a, step, back, front, 0.0, n)
        total = a.new_empty(step, *a.shape[1:])
        grad_a = torch.empty_like(a)
        blocks = zip(a_blocks, d_blocks, p_blocks, g.split(step), grad_a.split(step), strict=True)
        for a_block, d_block, p_block, g_block, grad_block in blocks:
            if not saved:
                _denominator(a_block, d_padded, scale, beta, d_block, p_block)
            torch.mul(g_block, p_block, out=grad_block)  # g_i d_i^-beta
            t, windows = t_padded.first(len(a_block))
            torch.mul(grad_block, a_block, out=t)
            t /= d_block
            window = _window_sum(windows, _first(total, len(a_block)))
            grad_block.addcmul_(a_block, window, value=-2.0 * beta * scale)
        return grad_a.to(dtype).reshape(shape), None, None, None, None, None


def _window_matrix(c: int, n: int, groups: int, like: torch.Tensor) -> torch.Tensor:
    """W (c x c) with W[j, i] = 1 where map j is in map i's window of its own group: sum_j a_j^2 W[j, i] is the
    window sum of map i, and the transposed window of the backward is a product with W^T."""
    i = torch.arange(c, device=like.device)
    j = i[:, None]
    per_group = c // groups
    inside = (j >= i - n // 2) & (j <= i + n - 1 - n // 2) & (j // per_group == i // per_group)
    return inside.to(like.dtype)


class _ChannelsLastLRN(torch.autograd.Function):
    """The same function for NHWC inputs (speed.channels_last): there a pixel's maps are adjacent in memory, so the
    window sums over maps are one (pixels x maps) @ (maps x maps) product with the 0/1 window matrix, and the
    input, output and gradient stay NHWC: no copy into NCHW and back around every LRN layer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int, scale: float, beta: float, k: float, groups: int) -> torch.Tensor:
        b, c, h, w = x.shape
        a = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view: x is NHWC
        a = a.float() if a.dtype in _HALF else a
        window = _window_matrix(c, n, groups, a)
        d = torch.addmm(a.new_full((c,), k), a * a, window, alpha=scale)  # k + scale * window sum of a^2
        p, out = torch.empty_like(d), torch.empty_like(d)
        _neg_pow(d, beta, p, scratch=out)
        torch.mul(a, p, out=out)
        ctx.save_for_backward(a, d, p, window)
        ctx.lrn = (scale, beta, x.shape, x.dtype)
        return out.to(x.dtype).view(b, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, d, p, window = ctx.saved_tensors
        scale, beta, (b, c, h, w), dtype = ctx.lrn
        g = grad.permute(0, 2, 3, 1).reshape(a.shape).to(a.dtype)
        grad_a = g * p  # g_i d_i^-beta
        t = grad_a * a
        t /= d  # g_j a_j d_j^(-beta-1)
        grad_a.addcmul_(a, t @ window.T, value=-2.0 * beta * scale)
        return grad_a.to(dtype).view(b, h, w, c).permute(0, 3, 1, 2), None, None, None, None, None
