"""Models: hourglass sizes and PyTorch-Pose parity, PyraNet (PRM A-D), checkpoint loading, model-info."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from pose_pipeline import cli
from pose_pipeline.errors import UserError
from pose_pipeline.models import ARCHITECTURES, build_model, hourglass, load_model, pyranet
from pose_pipeline.models.info import model_info


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(config: dict, joints: int) -> torch.nn.Module:
    with torch.device("meta"):  # shapes only: instant even at 8 stacks
        return build_model(config, joints)


# --- hourglass -------------------------------------------------------------------------------


@pytest.mark.parametrize("stacks, expected", [(1, 3_586_960), (2, 6_730_912), (8, 25_594_624)])
def test_hourglass_parameter_counts(stacks, expected):
    assert n_params(meta_model({"arch": "hourglass", "stacks": stacks, "blocks": 1}, 16)) == expected


def test_hourglass_matches_pytorch_pose_fixture(shared_fixtures):
    root = shared_fixtures / "pytorch_pose"
    model = load_model(root / "hg_s2_b1.pth.tar")
    assert model.model_config == {"arch": "hourglass", "stacks": 2, "blocks": 1, "features": 256, "joints": 16}
    io = np.load(root / "hg_s2_b1_io.npz")
    with torch.no_grad():
        outputs = model(torch.from_numpy(io["input"]))
    assert len(outputs) == 2
    for out, name in zip(outputs, ("out0", "out1")):
        np.testing.assert_allclose(out.numpy(), io[name], atol=1e-4, rtol=0)


# --- PyraNet ---------------------------------------------------------------------------------


def test_pyranet_is_registered():
    assert ARCHITECTURES["pyranet"] is pyranet


def test_pyranet_parameter_count_matches_paper():
    """8 stacks, PRM-B, width 256, 16 joints: the paper's 28.1 M within 2 %."""
    params = n_params(meta_model({"arch": "pyranet", "stacks": 8, "blocks": 1, "features": 256, "prm": "B"}, 16))
    assert abs(params - 28.1e6) / 28.1e6 < 0.02, params


def test_pyranet_cost_at_256():
    """Forward cost of the 8-stack PRM-B model (counted on the meta device, no compute)."""
    info = model_info({"arch": "pyranet", "stacks": 8, "blocks": 1, "features": 256, "prm": "B"}, 16, 256)
    assert 21e9 < info["macs"] < 24e9, info["macs"]
    assert info["flops"] == 2 * info["macs"]
    assert info["outputs"] == [[1, 16, 64, 64]] * 8


def test_pyranet_unit_layout():
    """PRMs at >= 1/4 of the hourglass input; projected skip on the last unit of each lower branch."""
    hg = pyranet.PyramidHourglass(32, blocks=2, variant="B")
    kinds = [[type(stack[-1]).__name__ for stack in level] for level in hg.hg]
    assert kinds[0] == ["Bottleneck", "Bottleneck", "ProjectedBottleneck", "Bottleneck"]  # 4x4 / 8x8
    assert kinds[1] == ["PyramidResidual", "Bottleneck", "ProjectedBottleneck"]
    assert kinds[2] == kinds[3] == ["PyramidResidual", "PyramidResidual", "PyramidResidual"]
    for level in hg.hg:
        assert level[2][0].downsample is None  # only the unit whose output meets the upper branch
        assert isinstance(level[2][-1].downsample[0], torch.nn.BatchNorm2d)
        assert isinstance(level[2][-1].downsample[1], torch.nn.ReLU)
        assert level[0][-1].downsample is None and level[1][-1].downsample is None


@pytest.mark.parametrize("prm", ["A", "B", "C", "D"])
@pytest.mark.parametrize("joints", [14, 16, 17])
def test_pyranet_forward_backward(prm, joints):
    torch.manual_seed(0)
    model = build_model({"arch": "pyranet", "stacks": 2, "blocks": 1, "features": 32, "prm": prm}, joints)
    x = torch.rand(2, 3, 64, 64)
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(2, joints, 16, 16)] * 2
    sum(o.square().mean() for o in outputs).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # every pyramid branch is reached by the gradient
    for name, p in model.named_parameters():
        if ".pyramid." in name and name.endswith("weight"):
            assert p.grad.abs().sum() > 0, name
    # inference is deterministic (fixed fractional-pooling regions in eval)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], model(x)[-1], rtol=0, atol=0)


@pytest.mark.parametrize("prm", ["A", "B", "C", "D"])
def test_pyranet_state_dict_round_trip(prm):
    model = pyranet.PyraNet(2, 2, 14, features=16, prm=prm)
    state_dict = model.state_dict()
    assert pyranet.is_state_dict(state_dict)
    assert not hourglass.is_state_dict(state_dict)
    assert not pyranet.is_state_dict(hourglass.HourglassNet(2, 2, 14, 16).state_dict())
    assert pyranet.config_from_state_dict(state_dict) == {
        "arch": "pyranet",
        "prm": prm,
        "stacks": 2,
        "blocks": 2,
        "features": 16,
        "joints": 14,
    }


def test_pyranet_bare_state_dict_loads(tmp_path):
    """A file without model_config (e.g. from another trainer) is recognised by its keys."""
    model = pyranet.PyraNet(1, 1, 16, features=16, prm="C")
    path = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = load_model(path)
    assert loaded.model_config["arch"] == "pyranet" and loaded.model_config["prm"] == "C"


def test_multibranch_initialisation_variance():
    """Empirical variance of PRM conv weights = 1 / (alpha^2 (C_i n_i + C_o n_o)), alpha = 0.5."""
    torch.manual_seed(0)
    unit = pyranet.PyramidResidual(256, 256, "B")
    pyranet.multibranch_init_(unit)
    pyr = unit.pyramid
    cases = [
        (pyr.conv_in, 4 / (256 + 4 * 28)),  # shared input: C_o = 4 branches
        (pyr.conv_out, 4 / (4 * 28 + 128)),  # g: C_i = 4 branches summed
        (pyr.branches[0], 4 / (9 * 28 + 9 * 28)),
        (unit.conv2, 4 / (9 * 128 + 9 * 128)),  # plain layer: MSR's 2 / n
    ]
    for conv, expected in cases:
        assert pyranet.multibranch_variance(conv) == pytest.approx(expected)
        empirical = conv.weight.var().item()
        assert abs(empirical / expected - 1) < 0.1, (conv, empirical, expected)
        assert conv.bias.abs().max() == 0
    # the whole model is initialised this way
    model = pyranet.PyraNet(1, 1, 16, features=256)
    conv = model.hg[0].hg[3][0][0].pyramid.conv_in
    assert abs(conv.weight.var().item() / pyranet.multibranch_variance(conv) - 1) < 0.1


def test_multibranch_initialisation_leaves_the_hourglass_modules_alone():
    """The stem, the plain bottlenecks and the heads are single-branch modules of hourglass.py:
    PyTorch's default init, as in the hourglass (weights and biases U(+-1/sqrt(fan_in)))."""
    torch.manual_seed(0)
    model = pyranet.PyraNet(1, 1, 16, features=256)
    plain = model.hg[0].hg[0][0][0]  # the innermost upper unit (8x8 at 256 px): a bottleneck
    assert isinstance(plain, hourglass.Bottleneck)
    for conv in (model.conv1, model.layer3[0].conv2, plain.conv2, model.fc[0][0], model.score[0]):
        fan_in = conv.weight[0].numel()
        assert abs(conv.weight.var().item() * 3 * fan_in - 1) < 0.1, conv
        assert conv.bias.abs().max() > 0, conv


def test_pyranet_heatmaps_at_init_are_on_the_hourglass_scale():
    """Freshly built, PyraNet's heatmaps have the hourglass's std in training mode and are within
    a small factor of it in eval mode (BN's running statistics at their (0, 1) start). With the
    paper's initialisation drawn for the stem and heads too they were 2-3x and 130-480x."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for features in (16, 32):
        for training, factor in ((True, 1.5), (False, 4.0)):
            torch.manual_seed(0)
            reference = hourglass.HourglassNet(1, 1, 16, features).train(training)
            torch.manual_seed(0)
            model = pyranet.PyraNet(1, 1, 16, features).train(training)
            with torch.no_grad():
                ratio = (model(x)[-1].std() / reference(x)[-1].std()).item()
            assert 1 / factor < ratio < factor, (features, training, ratio)


def test_branch_width():
    assert pyranet.branch_width(256) == 28
    assert pyranet.branch_width(128) == 14
    assert pyranet.branch_width(32) == 4


# --- torch.compile ---------------------------------------------------------------------------


def _require_compiler():
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("torch.compile (inductor) on CPU needs a C compiler; none on PATH")
    try:
        subprocess.run(["gcc", "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"torch.compile on CPU needs a working C compiler: {exc}")


@pytest.mark.parametrize(
    "config",
    [
        {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16},
        {"arch": "pyranet", "stacks": 1, "blocks": 1, "features": 16, "prm": "B"},
    ],
    ids=["hourglass", "pyranet"],
)
@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_compile_fullgraph(config):
    _require_compiler()
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(config, 16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    for a, b in zip(compiled, expected):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())
    torch._dynamo.reset()


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
@pytest.mark.parametrize("prm", ["A", "C", "D"])
def test_pyranet_variants_have_no_graph_breaks(prm):
    """Tracing only (eager backend): no graph breaks in any variant, train and eval."""
    torch._dynamo.reset()
    model = pyranet.PyraNet(1, 1, 16, features=8, prm=prm)
    x = torch.rand(2, 3, 64, 64)  # batch 2: training-mode BN at the 1x1 bottom needs > 1 value
    for training in (True, False):
        model.train(training)
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
    torch._dynamo.reset()


def test_channels_last():
    torch.manual_seed(0)
    model = pyranet.PyraNet(1, 1, 16, features=16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)[0]
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


# --- checkpoints -----------------------------------------------------------------------------


def _save(model: torch.nn.Module, config: dict, path):
    torch.save({"model_config": config, "state_dict": model.state_dict()}, path)
    return path


def test_load_refuses_other_joint_count(tmp_path):
    config = {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16, "joints": 16}
    path = _save(hourglass.build(config, 16), config, tmp_path / "hg.pth")
    assert load_model(path, expect={"joints": 16}).model_config == config
    with pytest.raises(UserError, match=r"joints=16.*needs 14"):
        load_model(path, expect={"joints": 14})


def test_load_refuses_other_architecture(tmp_path):
    config = {"arch": "pyranet", "stacks": 1, "blocks": 1, "features": 16, "prm": "B", "joints": 16}
    path = _save(pyranet.build(config, 16), config, tmp_path / "pyranet.pth")
    loaded = load_model(path, expect={"arch": "pyranet", "joints": 16})
    assert isinstance(loaded, pyranet.PyraNet) and not loaded.training
    with pytest.raises(UserError, match=r"arch='pyranet'.*needs 'hourglass'"):
        load_model(path, expect={"arch": "hourglass"})


class _Custom:  # an object whose unpickling would run project code
    def __init__(self):
        self.value = 1


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "extra": _Custom()}, path)
    with pytest.raises(UserError, match="pickled code"):
        load_model(path)


# --- model-info ------------------------------------------------------------------------------


def test_model_info_cli_hourglass(capsys):
    rc = cli.main(["model-info", "--arch", "hourglass", "--stacks", "8", "--joints", "16"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == "hourglass" and info["stacks"] == 8 and info["blocks"] == 1
    assert info["features"] == 256 and info["joints"] == 16 and "prm" not in info
    assert info["params"] == 25_594_624
    # FlopCounterMode's count, equal to the hand-written conv hooks it replaced (issue 16)
    assert info["flops"] == 56_188_993_536 and info["macs"] == 28_094_496_768
    assert info["outputs"] == [[1, 16, 64, 64]] * 8


def test_model_info_cli_pyranet(capsys):
    rc = cli.main(
        [
            "model-info",
            "--arch",
            "pyranet",
            "--stacks",
            "2",
            "--joints",
            "17",
            "--features",
            "32",
            "--prm",
            "C",
            "--input-size",
            "128",
        ]
    )
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["prm"] == "C" and info["joints"] == 17
    assert info["params"] == n_params(pyranet.PyraNet(2, 1, 17, 32, "C"))
    assert info["outputs"] == [[1, 17, 32, 32]] * 2


def test_model_info_rejects_bad_input(capsys):
    assert cli.main(["model-info", "--stacks", "1", "--joints", "16", "--input-size", "100"]) == 1
    assert "multiple of 64" in capsys.readouterr().err


def test_joint_set_travels_with_store_attrs_and_checkpoints():
    from pose_pipeline.core.joints import COCO, LSP, JointSet
    from pose_pipeline.models import joint_set_of

    assert JointSet.from_dict(LSP.to_dict()) is LSP
    custom = JointSet("paws", ("l_paw", "r_paw", "tail"), ((0, 1),), ((0, 2), (1, 2)))
    assert JointSet.from_dict(custom.to_dict()) == custom
    # a custom list under a built-in name is not mistaken for the built-in set
    renamed = JointSet.from_dict({**custom.to_dict(), "joint_set": "coco"})
    assert renamed is not COCO and renamed.joints == custom.joints
    assert joint_set_of({"joint_set": custom.to_dict(), "state_dict": {}}) == custom
    # PyTorch-Pose files record no set: the built-in set with that joint count
    assert joint_set_of({"model_config": {"arch": "hourglass", "joints": 16}, "state_dict": {}}).name == "mpii"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fixed_fractional_pooling_equals_atens_at_u_one_half(dtype):
    """Inference pools through gathers (ONNX has no fractional pooling): the very values of
    F.fractional_max_pool2d with every random sample at 0.5, over sizes and PyraNet's ratios."""
    import torch.nn.functional as F

    from pose_pipeline.models.pyranet import fractional_max_pool

    generator = torch.Generator().manual_seed(0)
    for size in (1, 2, 3, 7, 16, 33, 64, 97):
        x = torch.randn(2, 3, size, size + 5, generator=generator, dtype=dtype)
        for ratio in (2 ** (-1 / 4), 2 ** (-2 / 4), 2 ** (-3 / 4), 0.5):
            out = (max(1, int(size * ratio)), max(1, int((size + 5) * ratio)))
            kernel = (min(2, size - out[0] + 1), min(2, size + 5 - out[1] + 1))
            samples = torch.full((2, 3, 2), 0.5, dtype=dtype)
            reference = F.fractional_max_pool2d(x, kernel, output_size=out, _random_samples=samples)
            assert torch.equal(fractional_max_pool(x, ratio, training=False), reference), (size, ratio)
