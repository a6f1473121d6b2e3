"""The net of §3: sizes, parameter count, tower connectivity, switches, LRN, initialisation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet import AlexNet, LocalResponseNorm
from alexnet.model.net import conv_channels
from conftest import mini_kwargs

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def neurons_per_layer(net: AlexNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[1:]))
        for name in LAYERS
    ]
    net(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.fixture(scope="module")
def paper_net() -> AlexNet:
    torch.manual_seed(0)
    return AlexNet().eval()


def test_paper_net_parameter_count_and_layer_sizes(paper_net: AlexNet) -> None:
    assert sum(p.numel() for p in paper_net.parameters()) == 60_965_224
    with torch.no_grad():
        shapes = neurons_per_layer(paper_net, torch.randn(1, 3, 224, 224))
    assert tuple(shapes["conv1"]) == (96, 55, 55)
    # The paper's caption says 253,440 for conv1: a typo for 55*55*96 = 290,400.
    sizes = {name: int(torch.tensor(s).prod()) for name, s in shapes.items()}
    assert sizes["conv1"] == 290_400
    assert [sizes[n] for n in LAYERS[1:]] == [186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]


def test_conv1_pads_the_224_input_on_the_right_and_bottom_by_3(paper_net: AlexNet) -> None:
    # stem_padding [0, 3, 0, 3] = [left, right, top, bottom]: cuda-convnet2's geometry, 224 + 3 -> 55x55
    seen = {}
    hook = paper_net.conv1.register_forward_hook(lambda m, i, o: seen.__setitem__("conv1", o))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        paper_net(x)
        hook.remove()
        expected = F.conv2d(F.pad(x, (0, 3, 0, 3)), paper_net.conv1.weight, paper_net.conv1.bias, stride=4)
    assert expected.shape[-2:] == seen["conv1"].shape[-2:] == (55, 55)
    torch.testing.assert_close(seen["conv1"], expected, rtol=1e-4, atol=1e-5)


def test_two_towers_are_grouped_where_the_paper_says(paper_net: AlexNet) -> None:
    assert [getattr(paper_net, n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert paper_net.conv2.weight.shape[1] == 48  # 5x5x48: each kernel sees its own tower's maps
    assert paper_net.conv4.weight.shape[1] == paper_net.conv5.weight.shape[1] == 192


def test_tower_b_input_does_not_reach_tower_a_in_conv2_but_reaches_conv3() -> None:
    torch.manual_seed(0)
    net = AlexNet(**mini_kwargs(fc_width=64)).eval()
    half = net.conv1.out_channels // 2
    maps = torch.rand(1, net.conv1.out_channels, 11, 11)  # what conv2 receives: pooled conv1 maps
    perturbed = maps.clone()
    perturbed[:, half:] += torch.randn_like(perturbed[:, half:])  # tower B's maps only
    with torch.no_grad():
        a, b = net.conv2(maps), net.conv2(perturbed)
        out_half = net.conv2.out_channels // 2
        assert torch.equal(a[:, :out_half], b[:, :out_half])  # tower A's conv2 outputs unchanged
        assert not torch.allclose(a[:, out_half:], b[:, out_half:])
        # conv3 connects across towers: a change in tower B's conv2 maps reaches tower A's conv3 half
        c, d = net.conv3(torch.relu(a)), net.conv3(torch.relu(b))
        assert not torch.allclose(c[:, : net.conv3.out_channels // 2], d[:, : net.conv3.out_channels // 2])


def test_lrn_stays_within_a_tower() -> None:
    lrn = LocalResponseNorm(n=5, alpha=1.0, groups=2)
    x = torch.rand(1, 8, 2, 2)
    y = lrn(x)
    x2 = x.clone()
    x2[:, 4] += 5.0  # tower B's first map is not a neighbour of tower A's last
    assert torch.equal(lrn(x2)[:, :4], y[:, :4])


def test_lrn_with_two_towers_is_the_formula_within_each_tower() -> None:
    a = torch.rand(2, 10, 3, 3) * 30
    lrn = LocalResponseNorm(n=5, alpha=1e-3, alpha_convention="paper", groups=2)
    expected = torch.cat([lrn_loop(half.double(), 5, 1e-3, 0.75, 2.0) for half in a.chunk(2, dim=1)], 1)
    torch.testing.assert_close(lrn(a), expected.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("convention", ["paper", "cuda_convnet"])
def test_lrn_kernel_path_keeps_two_towers_apart_too(convention: str) -> None:
    # torch's kernel (what a GPU runs; cpu_kernel=False forces it here) with groups=2: the same function
    # as the shifted sums, and as one LRN per tower. Activations large enough that the denominator varies.
    torch.manual_seed(0)
    a = torch.relu(torch.randn(2, 12, 4, 4) * 100)
    kw = {"n": 5, "alpha": 1e-3, "beta": 0.75, "k": 2.0, "alpha_convention": convention}
    kernel, shifted = LocalResponseNorm(**kw, groups=2), LocalResponseNorm(**kw, groups=2)
    kernel.cpu_kernel, shifted.cpu_kernel = False, True
    per_tower = LocalResponseNorm(**kw, groups=1)
    per_tower.cpu_kernel = False
    y = kernel(a)
    torch.testing.assert_close(y, shifted(a), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y, torch.cat([per_tower(half) for half in a.chunk(2, dim=1)], 1), rtol=1e-5, atol=1e-6)
    denominator = (a / y)[a > 0]
    assert denominator.max() > 1.5 * denominator.min()  # the sum of squares matters, not just k
    # the last map of tower A and the first of tower B are not neighbours: groups=1 mixes them and differs
    assert not torch.allclose(per_tower(a)[:, 4:8], y[:, 4:8], rtol=1e-3)
    x2 = a.clone()
    x2[:, 6] += 50.0  # tower B's first map
    assert torch.equal(kernel(x2)[:, :6], y[:, :6])


def lrn_loop(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """§3.3 literally: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        out[:, i] = a[:, i] / (k + alpha * (a[:, lo : hi + 1] ** 2).sum(1)) ** beta
    return out


@pytest.mark.parametrize("cpu_kernel", [True, False])  # our CPU kernel (alexnet.model.lrn), and torch's (used on GPUs)
@pytest.mark.parametrize("convention", ["paper", "cuda_convnet"])
def test_lrn_matches_the_formula_per_channel_edges_included(convention: str, cpu_kernel: bool) -> None:
    torch.manual_seed(0)
    a = torch.rand(2, 12, 3, 3) * 30  # large activations, so alpha matters
    lrn = LocalResponseNorm(n=5, alpha=1e-3, beta=0.75, k=2.0, alpha_convention=convention)
    lrn.cpu_kernel = cpu_kernel
    alpha = 1e-3 if convention == "paper" else 1e-3 / 5  # the author's code divides alpha by n
    expected = lrn_loop(a.double(), 5, alpha, 0.75, 2.0).float()
    torch.testing.assert_close(lrn(a), expected, rtol=1e-5, atol=1e-6)
    other = "cuda_convnet" if convention == "paper" else "paper"
    assert not torch.allclose(LocalResponseNorm(n=5, alpha=1e-3, alpha_convention=other)(a), expected)


def test_one_tower_net_is_the_papers_half_kernel_comparison() -> None:
    assert conv_channels(1.0, "one") == [48, 128, 192, 192, 256]
    net = AlexNet(towers="one")
    assert all(getattr(net, n).groups == 1 for n in ("conv2", "conv4", "conv5"))
    assert net.fc6.in_features == 9216 and net.fc7.out_features == 4096


def test_non_overlapping_pooling_keeps_every_size() -> None:
    overlapping, non = AlexNet(), AlexNet(pooling="non_overlapping")
    assert (overlapping.pool.kernel_size, overlapping.pool.stride) == (3, 2)
    assert (non.pool.kernel_size, non.pool.stride) == (2, 2)
    assert sum(p.numel() for p in non.parameters()) == 60_965_224
    with torch.no_grad():
        a = neurons_per_layer(overlapping.eval(), torch.randn(1, 3, 224, 224))
        b = neurons_per_layer(non.eval(), torch.randn(1, 3, 224, 224))
    assert a == b


def test_mini_net_keeps_pooling_sizes_equal_too() -> None:
    kw = mini_kwargs()
    del kw["pooling"]
    a, b = AlexNet(**kw), AlexNet(**kw, pooling="non_overlapping")
    assert a.conv1_size == (23, 23)
    assert a.fc6.in_features == b.fc6.in_features == 64 * 2 * 2
    assert a(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_switches_change_the_network() -> None:
    net = AlexNet(activation="tanh", dropout=0.0, lrn={"enabled": False})
    assert isinstance(net.act, nn.Tanh)
    assert isinstance(net.lrn1, nn.Identity) and isinstance(net.lrn2, nn.Identity)
    net.train()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))  # dropout 0: train mode is deterministic
    with_dropout = AlexNet(dropout=0.5).train()
    with torch.no_grad():
        assert not torch.equal(with_dropout(x), with_dropout(x))


def test_dropout_drops_the_outputs_of_fc6_and_fc7_only() -> None:
    """§4.2: dropout on the outputs of fc6 and fc7 (after their ReLU): about half of their positive units zeroed
    in training, none at test time; pool5 (fc6's input) and the logits are never dropped. Compares which units are
    zero, so it holds for any dropout implementation and either scaling convention."""
    torch.manual_seed(0)
    net = AlexNet(**mini_kwargs(dropout=0.5))
    inputs, logits = {}, {}
    hooks = [
        getattr(net, name).register_forward_pre_hook(lambda m, i, name=name: inputs.__setitem__(name, i[0].detach()))
        for name in ("fc6", "fc7", "fc8")
    ]
    hooks.append(net.fc8.register_forward_hook(lambda m, i, o: logits.__setitem__("fc8", o.detach())))
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        out_eval = net.eval()(x)
        evaluated = dict(inputs)
        out_train = net.train()(x)
        trained = dict(inputs)
        # what fc8 would have seen without dropout, from the train-mode input of fc7
        fc8_undropped = torch.relu(net.fc7(trained["fc7"]))
    for h in hooks:
        h.remove()
    assert torch.equal(out_train, logits["fc8"])  # the net returns fc8's output as it is: the logits not dropped
    assert torch.equal(trained["fc6"], evaluated["fc6"])  # flattened pool5: not dropped
    for name, before, after in (
        ("fc7", evaluated["fc7"], trained["fc7"]),
        ("fc8", fc8_undropped, trained["fc8"]),
    ):
        positive = before > 0
        assert positive.sum() > 1000, name
        assert torch.equal(after[~positive], torch.zeros_like(after[~positive])), name  # zeros stay zeros
        dropped = (after[positive] == 0).float().mean().item()
        assert 0.4 < dropped < 0.6, (name, dropped)  # about half of the active units
        assert (after[positive] != 0).sum() > 0.4 * positive.sum(), name
    assert torch.equal(evaluated["fc7"] > 0, torch.relu(net.fc6(evaluated["fc6"])) > 0)  # eval mode: none dropped
    assert (out_train != 0).all() and (out_eval != 0).all()


def test_paper_initialisation(paper_net: AlexNet) -> None:
    for name in LAYERS:
        w = getattr(paper_net, name).weight
        assert abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name in LAYERS:
        bias = getattr(paper_net, name).bias
        assert torch.equal(bias, torch.ones_like(bias) if name in ones else torch.zeros_like(bias)), name


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"dropout": 1.5}, "dropout"),
        ({"activation": "foo"}, "activation"),
        ({"pooling": "ceil"}, "pooling"),
        ({"towers": "three"}, "towers"),
        ({"input_size": 32}, "input_size"),
        ({"lrn": {"alpha_convention": "caffe"}}, "alpha_convention"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        AlexNet(**kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"lrn": {"enabled": False}, "activation": "tanh", "dropout": 0.0}])
def test_print_follows_the_data_flow(kwargs: dict) -> None:
    """print(net) reads as Fig. 2: the layers are registered in the order a forward pass calls them, each use of
    an activation, pooling or dropout its own layer (conv -> ReLU -> LRN -> pool, twice; conv3-5; pool; fc6 and
    fc7 each with ReLU and dropout; fc8)."""
    net = AlexNet(**mini_kwargs(**kwargs))
    called: list[str] = []
    children = list(net.named_children())
    hooks = [m.register_forward_pre_hook(lambda m, i, name=name: called.append(name)) for name, m in children]
    net(torch.randn(2, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert called == [name for name, _ in net.named_children()]
    assert called[:5] == ["pad", "conv1", "act1", "lrn1", "pool1"] and called[-1] == "fc8"
    assert [n for n in called if n.startswith(("conv", "fc"))] == list(LAYERS)
    assert called.index("drop6") == called.index("act6") + 1 and called.index("drop7") == called.index("act7") + 1


def test_lrn_constant_mode_is_lrn_scale_without_normalisation() -> None:
    """The control of the LRN claim: k^-beta times the input (LRN's factor where the maps are silent), whatever
    the neighbouring maps hold; the paper's layer at the same input divides strong maps by more."""
    x = torch.rand(2, 12, 4, 4) * 255
    constant = LocalResponseNorm(groups=2, mode="constant")
    torch.testing.assert_close(constant(x), x * 2.0**-0.75)
    assert not torch.allclose(LocalResponseNorm(groups=2)(x), x * 2.0**-0.75)
    net = AlexNet(**mini_kwargs(lrn={"enabled": True, "mode": "constant"}))
    assert net.lrn1.mode == net.lrn2.mode == "constant"
    with pytest.raises(ValueError, match="lrn.mode"):
        LocalResponseNorm(mode="divide")
