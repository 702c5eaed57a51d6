"""Model registry: build a model from the experiment config, load checkpoints.

Checkpoints this project writes hold `{"model_config": {...}, "state_dict": ...}`; PyTorch-Pose
files hold `{"state_dict": {"module.<key>": ...}, "epoch", "arch", "best_acc", "optimizer"}` and
their architecture is inferred from the state dict. Both load with `weights_only=True`.
A model's shape (and its defaults) is its family's config dataclass, `model_shape`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pose_pipeline.core.joints import JOINT_SETS, JointSet, shared_joints
from pose_pipeline.errors import UserError
from pose_pipeline.models import hourglass, pyranet

ARCHITECTURES = {"hourglass": hourglass, "pyranet": pyranet}
# arch -> the dataclass of its shape and defaults
SHAPES = {"hourglass": hourglass.HourglassConfig, "pyranet": pyranet.PyraNetConfig}
DEFAULT_ARCH = "hourglass"  # a model config without `arch` (the schema requires one; old callers)


def _arch(model_config: dict) -> str:
    arch = model_config.get("arch", DEFAULT_ARCH)
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown model arch {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return arch


def model_shape(model_config: dict):
    """The shape of the model `model_config` describes, defaults filled in (a HourglassConfig
    or PyraNetConfig)."""
    return SHAPES[_arch(model_config)].from_dict(model_config)


def build_model(model_config: dict, joints: int) -> torch.nn.Module:
    """The model described by an experiment's `model:` section, for `joints` output channels."""
    return ARCHITECTURES[_arch(model_config)].build(model_config, joints)


def strip_module_prefix(state_dict: dict) -> dict:
    """Keys saved from nn.DataParallel / DistributedDataParallel start with `module.`."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def looks_like_torch_file(path: Path) -> bool:
    """Whether a file starts as torch.save writes one: a zip archive (since PyTorch 1.6), a
    binary pickle (before; PyTorch-Pose's files) or a tar file (the oldest). Checked before
    torch.load, which takes other text for pickled code and advises turning the safety off."""
    with open(path, "rb") as f:
        head = f.read(262)
    return head.startswith((b"PK\x03\x04", b"\x80")) or head[257:262] == b"ustar"


def read_checkpoint(path) -> dict:
    """The checkpoint dict, loaded without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if not looks_like_torch_file(path):
        raise UserError(
            f"{path}: not a PyTorch checkpoint (neither the zip archive torch.save writes nor the older "
            "pickle or tar file)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for bad files
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UserError(
                f"{path}: refused, the file needs pickled code to load ({text}); "
                "only plain tensors and containers are accepted"
            ) from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({text})") from None
    if (
        isinstance(checkpoint, dict)
        and "state_dict" not in checkpoint
        and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    ):
        checkpoint = {"state_dict": checkpoint}  # a bare state dict
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path}: not a model checkpoint (no state_dict)")
    return checkpoint


def model_config_of(checkpoint: dict, path="checkpoint") -> dict:
    """Architecture of a checkpoint: recorded by this project, else inferred from the keys."""
    if isinstance(checkpoint.get("model_config"), dict):
        return dict(checkpoint["model_config"])
    state_dict = strip_module_prefix(checkpoint["state_dict"])
    for module in ARCHITECTURES.values():
        if module.is_state_dict(state_dict):
            return module.config_from_state_dict(state_dict)
    raise UserError(f"{path}: state dict matches no known architecture ({', '.join(ARCHITECTURES)})")


def joint_set_of(checkpoint: dict, path="checkpoint") -> JointSet:
    """The joint set a checkpoint was trained on: recorded by this project since the set
    became part of the model record; for older files and PyTorch-Pose's, the built-in set
    with that many joints when exactly one has it (16: MPII)."""
    if isinstance(checkpoint.get("joint_set"), dict):
        return JointSet.from_dict(checkpoint["joint_set"])
    joints = model_config_of(checkpoint, path)["joints"]
    candidates = [s for s in JOINT_SETS.values() if s.num_joints == joints]
    if len(candidates) != 1:
        raise UserError(
            f"{path}: records no joint set, and {joints} joints match "
            f"{'none' if not candidates else ' and '.join(s.name for s in candidates)} of the built-in sets"
        )
    return candidates[0]


def training_canvas_of(checkpoint: dict) -> dict:
    """How the model's training store cut its crops: `convert`'s canvas_size, context and
    reduced_decode, recorded with the model, for infer (and users of an export) to cut alike. A
    checkpoint without the record (PyTorch-Pose's, or saved before it was kept) gets the
    converters' defaults and the full decode, as the stores of that time had."""
    from pose_pipeline.config.schema import schema_defaults

    defaults = schema_defaults("dataset")
    converter = checkpoint.get("converter")
    converter = converter if isinstance(converter, dict) else {}
    return {
        "canvas_size": int(converter.get("canvas_size", defaults["canvas_size"])),
        "context": float(converter.get("context", defaults["context"])),
        "reduced_decode": bool(converter.get("reduced_decode", False)),
    }


def load_model(path, expect: dict | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An eval-mode model from a checkpoint of this project or of PyTorch-Pose.

    `expect` (optional) holds model-config keys the caller needs (e.g. joints, arch); a
    checkpoint that differs is refused naming both values.
    """
    return model_from_checkpoint(read_checkpoint(path), path, expect, device)


def model_from_checkpoint(
    checkpoint: dict, path, expect: dict | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """`load_model` of a checkpoint already read (`read_checkpoint`); `path` names it in errors."""
    config = model_config_of(checkpoint, path)
    for key, value in (expect or {}).items():
        if key in config and config[key] != value:
            raise UserError(f"{path}: checkpoint has {key}={config[key]!r}, this run needs {value!r}")
    model = build_model(config, config["joints"])
    state_dict = strip_module_prefix(checkpoint["state_dict"])
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit a {config}: {str(exc).splitlines()[0]}") from None
    bad = next(
        (
            name
            for name, tensor in model.state_dict().items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()
        ),
        None,
    )
    if bad is not None:
        raise UserError(f"{path}: weight {bad} holds NaN or infinite values (the run that wrote it diverged)")
    model.model_config = config
    return model.eval().to(device)


def describe_config(model_config: dict) -> str:
    """'hourglass, 8 stacks, 1 blocks, 256 features' (the shape keys a checkpoint records)."""
    shape = ", ".join(
        f"{model_config[k]} {k}" for k in ("stacks", "blocks", "features", "prm", "joints") if k in model_config
    )
    return f"{_arch(model_config)} ({shape})"


def load_weights(model: torch.nn.Module, model_config: dict, path, joints: JointSet | None = None) -> str | None:
    """Copy a checkpoint's weights into `model`, built from `model_config` for the joint set
    `joints` (init_checkpoint, --resume from another run); UserError naming both architectures
    when they differ.

    A checkpoint of another joint set (recorded, or PyTorch-Pose's 16 joints: MPII) gives its
    trunk whole and, in the per-joint layers (`hourglass.joint_axis`: the heads and the maps
    from heatmaps back into features, both families' `add_heads`), the rows and columns of the
    joints both sets have (`joints.shared_joints`); the others keep the model's own fresh
    initialisation. Returns a line saying which joints came across, None for the same set.
    """
    checkpoint = read_checkpoint(path)
    source_config = model_config_of(checkpoint, path)
    if model_shape(source_config) != model_shape(model_config):
        raise UserError(
            f"{path}: a {describe_config(source_config)} checkpoint; its weights do not fit "
            f"this run's {describe_config(model_config)}"
        )
    source_joints = _source_joint_set(checkpoint, path, joints)
    if source_joints is None or source_joints.joints == joints.joints:
        source = model_from_checkpoint(checkpoint, path, expect={"joints": model_config["joints"]})
        _load_fitting(model, source.state_dict(), path, source_config, model_config)
        return None
    source = model_from_checkpoint(checkpoint, path)
    pairs = shared_joints(source_joints, joints)
    state = transfer_joint_rows(model.state_dict(), source.state_dict(), pairs)
    _load_fitting(model, state, path, source_config, model_config)
    return describe_transfer(source_joints, joints, pairs)


def _source_joint_set(checkpoint: dict, path, joints: JointSet | None) -> JointSet | None:
    """The checkpoint's joint set, None where it does not matter or cannot be known: no target
    set given, or a file that records none with the target's joint count (loaded whole, as
    before sets were recorded)."""
    if joints is None:
        return None
    try:
        return joint_set_of(checkpoint, path)
    except UserError:
        if model_config_of(checkpoint, path)["joints"] == joints.num_joints:
            return None
        raise


def transfer_joint_rows(target: dict, source: dict, pairs: list[tuple[int, int]]) -> dict:
    """`target`'s state dict with `source`'s tensors, where per-joint tensors take only the
    source's rows (columns) of the joints in `pairs` ((target index, source index)) and
    keep their own elsewhere."""
    to_rows = torch.tensor([t for t, _ in pairs], dtype=torch.long)
    from_rows = torch.tensor([s for _, s in pairs], dtype=torch.long)
    merged = {}
    for key, value in target.items():
        axis = hourglass.joint_axis(key)  # both families' heads are hourglass.add_heads'
        if key not in source:
            merged[key] = value  # load_state_dict names it
        elif axis is None:
            merged[key] = source[key]
        else:
            merged[key] = value.clone().index_copy_(axis, to_rows, source[key].index_select(axis, from_rows))
    return merged


def describe_transfer(source: JointSet, target: JointSet, pairs: list[tuple[int, int]]) -> str:
    """'mpii -> lsp: 14 of 14 joints came across (r_ankle, ..., neck from upper_neck, ...); new: ...'"""
    came = [
        target.joints[t] + ("" if target.joints[t] == source.joints[s] else f" from {source.joints[s]}")
        for t, s in pairs
    ]
    fresh = [name for t, name in enumerate(target.joints) if t not in {t for t, _ in pairs}]
    return (
        f"{source.name} -> {target.name}: {len(pairs)} of {target.num_joints} joints came across "
        f"({', '.join(came) or 'none'}); freshly initialised: {', '.join(fresh) or 'none'}"
    )


def _load_fitting(model: torch.nn.Module, state: dict, path, source_config: dict, model_config: dict) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UserError(
            f"{path}: a {describe_config(source_config)} checkpoint; its weights do not fit "
            f"this run's {describe_config(model_config)}"
        ) from None
