"""`pose-pipeline predict`: keypoints in original image coordinates, with flip test, for every
sample of a store (through `pose_pipeline.inference.engine.predict_store`, as validation does).
"""

from __future__ import annotations

import argparse
import logging

from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.inference.engine import add_evaluation_options, predict_store
from pose_pipeline.util.devices import resolve_device

log = logging.getLogger(__name__)


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (this project's or PyTorch-Pose)")
    p.add_argument("--store", required=True, help="converted store to predict")
    p.add_argument(
        "--out-mat",
        required=True,
        help="reference prediction file (MATLAB `preds`, N x J x 2, and `store_fingerprint`: the store predicted)",
    )
    p.add_argument("--out-csv", required=True, help="the same as a table: sample,image,joint,x,y,score")
    add_evaluation_options(p, "crops")


def check_joint_names(path, loaded, store) -> None:
    """A checkpoint that records its joint set predicts a store of the same joints: the same
    count is not enough (two custom 9-joint sets would label each other's heatmaps)."""
    trained = loaded.joints
    if loaded.joints_recorded and trained.joints != store.joint_set.joints:
        raise UserError(
            f"{path}: trained on joint set {trained.name} {list(trained.joints)}, but the store "
            f"{store.path} holds {store.joint_set.name} {list(store.joint_set.joints)}"
        )


def run(args: argparse.Namespace) -> int:
    from pose_pipeline.inference.loaded_model import load_for_inference
    from pose_pipeline.inference.prediction_files import write_predictions

    device = resolve_device(args.device)
    store = open_store(args.store)
    loaded = load_for_inference(
        args.checkpoint, device, args.input_size, args.blur_sigma, expect={"joints": store.joint_set.num_joints}
    )
    check_joint_names(args.checkpoint, loaded, store)
    codec = loaded.codec
    log.info(
        "predicting %d samples of %s on %s at %d px (flip test %s)",
        len(store),
        args.store,
        device,
        codec.input_size,
        "on" if args.flip_test else "off",
    )
    preds, scores, _ = predict_store(loaded.model, store, codec, args.flip_test, args.batch_size, device, progress=True)
    write_predictions(args.out_mat, args.out_csv, preds, store, scores)
    print(f"{args.out_mat}: {preds.shape[0]} x {preds.shape[1]} x 2 predictions")
    return 0
