"""`pose-pipeline export`: ONNX and TorchScript files that reproduce the PyTorch model (heatmaps,
decoded keypoints) in a fresh process without this package, for both model families."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pose_pipeline import cli
from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.batches import HostBatch, finish_batch
from pose_pipeline.inference.engine import mirror_average
from pose_pipeline.inference.export import crop_pose_model
from pose_pipeline.models import build_model

INPUT_SIZE = 64

# What a user without this package runs: the exported file, numpy, and onnxruntime or torch.
RUNNER = """
import sys
import numpy as np
fmt, model_path, crops_path, out_path = sys.argv[1:]
crops = np.load(crops_path)
if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    heatmaps, keypoints, scores = session.run(None, {"crops": crops})
else:
    import torch
    model = torch.jit.load(model_path)
    # as a user writes it: no torch.no_grad(), no .detach()
    heatmaps, keypoints, scores = (t.numpy() for t in model(torch.from_numpy(crops)))
assert not any(name.split(".")[0] == "pose_pipeline" for name in sys.modules), "pose_pipeline was imported"
np.savez(out_path, heatmaps=heatmaps, keypoints=keypoints, scores=scores)
"""


def checkpoint(path, arch: str, stacks: int):
    """A small random model saved as this project's checkpoint."""
    torch.manual_seed(0)
    config = {"arch": arch, "stacks": stacks, "blocks": 1, "features": 16, "joints": MPII.num_joints}
    model = build_model(config, MPII.num_joints)
    torch.save(
        {
            "model_config": config,
            "joint_set": MPII.to_dict(),
            "state_dict": model.state_dict(),
            "input_size": INPUT_SIZE,
            "settings": {"evaluation": {"blur_sigma": 1.0}},
        },
        path,
    )
    return path


def reference(path, crops: np.ndarray, flip_test: bool):
    """What predict computes for these crops: its batch preparation (identity warp), the last
    stack, the flip average, the codec's decode mapped from heatmap to crop pixels."""
    model, codec, joints, _ = crop_pose_model(str(path), flip_test=flip_test)
    n = len(crops)
    batch = HostBatch(
        crops,
        np.tile(np.eye(2, 3), (n, 1, 1)),
        np.zeros((n, joints.num_joints, 2)),
        np.zeros((n, joints.num_joints), np.float32),
        None,
    )
    x, _, _ = finish_batch(batch, HeatmapCodec(INPUT_SIZE), torch.device("cpu"), "cv2")
    with torch.no_grad():
        heatmaps = model.model(x)[-1]
        if flip_test:
            heatmaps = mirror_average(
                heatmaps, model.model(torch.flip(x, dims=[3]))[-1], torch.as_tensor(joints.flip_permutation())
            )
    coords, scores = codec.decode(heatmaps.numpy())
    return heatmaps.numpy(), geometry.apply(geometry.invert(codec.input_to_heatmap()), coords), scores


@pytest.mark.slow  # exports, then runs each file in a fresh process
@pytest.mark.parametrize("arch,stacks,flip_test", [("hourglass", 2, True), ("pyranet", 1, False)])
def test_exported_models_reproduce_pytorch_in_a_fresh_process(tmp_path, arch, stacks, flip_test):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model_path = checkpoint(tmp_path / "model.pt", arch, stacks)
    crops = np.random.default_rng(1).integers(0, 256, (3, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    heatmaps, keypoints, scores = reference(model_path, crops, flip_test)

    # the wrapped model (what is exported) is predict's path: normalisation, flip, decode
    wrapped, _, _, _ = crop_pose_model(str(model_path), flip_test=flip_test)
    with torch.no_grad():
        mine = [t.numpy() for t in wrapped(torch.from_numpy(crops))]
    np.testing.assert_allclose(mine[0], heatmaps, atol=1e-6)
    # a random model's flat peaks turn float32 rounding of the heatmaps into ~1e-4 pixel
    np.testing.assert_allclose(mine[1], keypoints, atol=1e-3)

    (tmp_path / "runner.py").write_text(RUNNER)
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"model.{fmt}"
        argv = ["export", "--checkpoint", str(model_path), "--format", fmt, "--out", str(out)]
        assert cli.main(argv + (["--flip-test"] if flip_test else [])) == 0
        description = json.loads((tmp_path / f"model.{fmt}.json").read_text())
        assert description["input_size"] == INPUT_SIZE and description["heatmap_size"] == INPUT_SIZE // 4
        assert description["joints"] == list(MPII.joints) and description["flip_test"] == flip_test
        assert description["flip_pairs"] == [list(p) for p in MPII.flip_pairs] and description["edges"]

        # a fresh interpreter, outside the checkout, where this package is not imported
        subprocess.run(
            [
                sys.executable,
                str(tmp_path / "runner.py"),
                fmt,
                str(out),
                str(tmp_path / "crops.npy"),
                str(tmp_path / f"{fmt}.npz"),
            ],
            check=True,
            cwd=tmp_path,
            timeout=300,
        )
        got = np.load(tmp_path / f"{fmt}.npz")
        assert got["heatmaps"].shape == heatmaps.shape and got["keypoints"].shape == (3, MPII.num_joints, 2)
        np.testing.assert_allclose(got["heatmaps"], heatmaps, atol=1e-4, err_msg=fmt)
        np.testing.assert_allclose(got["keypoints"], keypoints, atol=0.01, err_msg=fmt)
        np.testing.assert_allclose(got["scores"], scores, rtol=1e-4, atol=1e-4, err_msg=fmt)


def test_torchscript_outputs_need_no_grad(tmp_path):
    """The traced file's outputs do not require grad: `.numpy()` works on them as they come."""
    model_path = checkpoint(tmp_path / "model.pt", "hourglass", 1)
    out = tmp_path / "model.torchscript"
    argv = ["export", "--checkpoint", str(model_path), "--format", "torchscript", "--out", str(out)]
    assert cli.main(argv) == 0
    outputs = torch.jit.load(str(out))(torch.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8))
    assert [t.requires_grad for t in outputs] == [False] * 3
    assert [t.numpy().shape for t in outputs][1:] == [(1, MPII.num_joints, 2), (1, MPII.num_joints)]


def test_the_decode_blur_is_scipys_gaussian_filter():
    """The blur of the one decode (predict and the exported graphs) as a matrix product equals
    scipy.ndimage's Gaussian filter (its default mode, the map mirrored beyond the border;
    truncated at 4 sigma), on maps of any size, smaller than the kernel too; not rescaled."""
    from scipy.ndimage import gaussian_filter

    from pose_pipeline.core.codec import blur_heatmaps

    rng = np.random.default_rng(0)
    for shape in ((3, 4, 16, 20), (2, 1, 3, 1)):
        maps = rng.random(shape) - 0.5
        for sigma in (0.5, 1.0, 2.5):
            expected = gaussian_filter(maps, (0, 0, sigma, sigma), mode="reflect", truncate=4.0)
            np.testing.assert_allclose(
                blur_heatmaps(torch.from_numpy(maps), sigma).numpy(), expected, rtol=1e-12, atol=1e-14
            )


def test_export_refuses_an_input_size_the_models_cannot_take(tmp_path, capsys):
    model_path = checkpoint(tmp_path / "model.pt", "hourglass", 1)
    argv = [
        "export",
        "--checkpoint",
        str(model_path),
        "--format",
        "torchscript",
        "--out",
        str(tmp_path / "m.pt"),
        "--input-size",
        "100",
    ]
    assert cli.main(argv) == 1
    assert "--input-size: must be a multiple of 64" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.json").exists()
