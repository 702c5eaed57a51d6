"""`pose-pipeline mpii-submission`: predictions on MPII's test people -> the benchmark's
submission file, `pred_keypoints_mpii.mat` (variable `pred`, the release's test annolist with
each single person's joints; layout in `pose_pipeline.data.formats.mpii_test`).

The people are a store converted with `convert mpii --split test` from the same release
(checked by its sha256); the predictions are `predict`'s on that store, row for row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pose_pipeline.errors import UserError


def check_test_store(store, store_path, release_path: Path) -> None:
    """The store holds the test people of exactly this release, in its pixels."""
    from pose_pipeline.data.store import sha256_of

    attrs = store.attrs
    if attrs.get("format") != "mpii" or attrs.get("split") != "test":
        raise UserError(
            f"{store_path}: a store of format {attrs.get('format')!r}, split {attrs.get('split')!r}; "
            f"expected MPII's test people (`convert mpii --split test`)"
        )
    sources = attrs.get("sources") or [{}]
    if sources[0].get("sha256") != sha256_of(release_path):
        raise UserError(
            f"{store_path}: converted from {sources[0].get('file')!r}, not from {release_path} (sha256 "
            "differs): the people would not match the release's annolist"
        )


def write(release_path, store_path, preds_path, out) -> dict:
    """Write the submission; returns {people, images, out}."""
    from pose_pipeline.core.joints import MPII
    from pose_pipeline.data.formats import mpii_test
    from pose_pipeline.data.store import open_store
    from pose_pipeline.inference.prediction_files import check_image_names, check_store_fingerprint, read_predictions

    release_path, store_path, preds_path = Path(release_path), Path(store_path), Path(preds_path)
    store = open_store(store_path)
    check_test_store(store, store_path, release_path)
    preds = read_predictions(preds_path, joints=MPII)
    names = [str(name) for name in store.image_name]
    if len(preds) != len(names):
        raise UserError(
            f"{preds_path}: {len(preds)} predictions, but the store {store_path} holds {len(names)} "
            "people: predictions of another store?"
        )
    check_image_names(preds_path, store_path, names)
    check_store_fingerprint(preds_path, store_path)
    release = mpii_test.load_test_release(release_path)
    pred = mpii_test.submission_annolist(release, store.source_index, preds, names, what=str(preds_path))
    mpii_test.write_submission(out, pred)
    return {"people": len(preds), "images": int(release.test_images.size), "out": str(out)}


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--release",
        required=True,
        help="the MPII release .mat (RELEASE with annolist, img_train, single_person) the store came from",
    )
    p.add_argument("--store", required=True, help="the test people's store (`convert mpii --split test`)")
    p.add_argument("--preds", required=True, help="predict's predictions on that store (.mat `preds` or .csv)")
    p.add_argument("--out", required=True, help="the submission file (pred_keypoints_mpii.mat)")


def run(args: argparse.Namespace) -> int:
    summary = write(args.release, args.store, args.preds, args.out)
    print(f"{summary['out']}: {summary['people']} single persons on {summary['images']} test images")
    return 0
