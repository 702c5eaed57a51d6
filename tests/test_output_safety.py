"""Output folders: a stage replaces only what it wrote itself, and replaces it atomically."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_random_store, random_checkpoint

from pose_pipeline import __version__, cli
from pose_pipeline.data.demo import generate as demo_data
from pose_pipeline.data.store import OPTIONAL_ARRAYS, PER_SAMPLE_ARRAYS, is_store, open_store
from pose_pipeline.errors import UserError
from pose_pipeline.util import atomic

REPO_ROOT = Path(__file__).resolve().parents[1]


def folder_digest(path: Path) -> dict[str, str]:
    """Every file below `path` (relative name -> sha256): equal digests, byte-identical folders."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    demo_data.generate(out, seed=3, train=6, val=2, image_size=96, progress=False)
    return out


def convert_args(demo: Path, out: Path) -> list[str]:
    return [
        "convert",
        "mpii",
        "--annotations",
        str(demo / "mpii_release.mat"),
        "--images",
        str(demo / "images"),
        "--out",
        str(out),
        "--split",
        "train",
        "--canvas-size",
        "64",
        "--shard-size",
        "4",
        "--workers",
        "1",
    ]


def test_convert_refuses_to_write_over_the_image_folder(demo_folder, capsys):
    before = folder_digest(demo_folder)
    assert cli.main(convert_args(demo_folder, demo_folder / "images")) == 1
    assert "holds the image folder" in capsys.readouterr().err
    assert folder_digest(demo_folder) == before


def test_convert_refuses_an_out_folder_that_holds_the_annotations(demo_folder, capsys):
    before = folder_digest(demo_folder)
    assert cli.main(convert_args(demo_folder, demo_folder)) == 1
    assert "holds the" in capsys.readouterr().err
    assert folder_digest(demo_folder) == before


def test_convert_refuses_a_folder_that_is_not_a_store(demo_folder, tmp_path, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("my thesis")
    assert cli.main(convert_args(demo_folder, other)) == 1
    err = capsys.readouterr().err
    assert f"{other}: not written by pose-pipeline convert (no zarr.json with a store's" in err
    assert (other / "notes.txt").read_text() == "my thesis"
    assert not any(p.name.startswith(".mine.partial") for p in tmp_path.iterdir())


def test_convert_refuses_an_out_that_is_a_file(demo_folder, tmp_path, capsys):
    target = tmp_path / "store.zarr"
    target.write_text("x")
    assert cli.main(convert_args(demo_folder, target)) == 1
    assert "exists and is not a folder" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_convert_replaces_its_own_store_and_takes_an_empty_folder(demo_folder, tmp_path):
    out = tmp_path / "train.zarr"
    out.mkdir()  # empty: nothing to lose
    assert cli.main(convert_args(demo_folder, out)) == 0
    first = open_store(out)
    assert len(first) == 8
    assert cli.main(convert_args(demo_folder, out) + ["--context", "2.0"]) == 0
    assert open_store(out).context == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.zarr"]


def test_demo_data_refuses_a_folder_with_a_file_and_replaces_its_own(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    before = folder_digest(mine)
    assert cli.main(["demo-data", "--out", str(mine), "--train", "2", "--val", "1", "--no-progress"]) == 1
    assert f"{mine}: not written by pose-pipeline demo-data (no marker file pose-pipeline-demo-data.json)" in (
        capsys.readouterr().err
    )
    assert folder_digest(mine) == before

    demo = tmp_path / "demo"
    for seed in ("1", "2"):  # the second run replaces the first one's folder
        assert (
            cli.main(
                [
                    "demo-data",
                    "--out",
                    str(demo),
                    "--train",
                    "2",
                    "--val",
                    "1",
                    "--seed",
                    seed,
                    "--image-size",
                    "64",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert '"seed": 2' in (demo / atomic.marker_name("demo-data")).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "mine"]


def user_folder(folder: Path, files: dict[str, str]) -> dict[str, str]:
    """A user's folder holding files named as a stage names its outputs, beside a thesis; its
    digest."""
    for name, text in {**files, "thesis.tex": "\\documentclass{article}"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder_digest(folder)


def refusal(err: str, folder: Path, stage: str, missing: str) -> None:
    """`err` holds one error line that names the folder, why, and how to go on."""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert f"{folder}: not written by pose-pipeline {stage} ({missing}); refusing to replace it" in errors[0]
    assert "Choose a new or empty folder for --out" in errors[0]


def infer_args(checkpoint: Path, images: Path, out: Path) -> list[str]:
    return ["infer", "--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]


def test_infer_refuses_a_folder_with_its_file_names_but_not_its_marker(demo_folder, tmp_path, capsys):
    model = random_checkpoint(tmp_path / "m.pt", None)
    mine = tmp_path / "mine"
    before = user_folder(mine, {"keypoints.json": "{}", "skipped.csv": "a,b"})
    assert cli.main(infer_args(model, demo_folder / "images" / "000000.jpg", mine)) == 1
    refusal(capsys.readouterr().err, mine, "infer", "no marker file pose-pipeline-infer.json")
    assert folder_digest(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "mine"]  # no partial folder left


def test_infer_replaces_its_own_output_also_once_snakemake_deleted_the_declared_files(demo_folder, tmp_path):
    """Snakemake deletes a rule's declared outputs (keypoints.*, skipped.csv, drawings/) before
    a rerun, not the folder: the marker left there still marks it as infer's."""
    model = random_checkpoint(tmp_path / "m.pt", None)
    image, out = demo_folder / "images" / "000000.jpg", tmp_path / "out"
    out.mkdir()  # empty: nothing to lose
    for _ in range(2):  # the second run replaces the first one's folder
        assert cli.main(infer_args(model, image, out) + ["--draw"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["drawings", "keypoints.csv", "keypoints.json", "pose-pipeline-infer.json", "skipped.csv"]
    assert json.loads((out / "pose-pipeline-infer.json").read_text())["stage"] == "infer"
    for name in ("keypoints.json", "keypoints.csv", "skipped.csv"):
        (out / name).unlink()
    shutil.rmtree(out / "drawings")
    assert cli.main(infer_args(model, image, out) + ["--draw"]) == 0
    assert sorted(p.name for p in out.iterdir()) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "out"]


def test_convert_refuses_a_folder_that_looks_like_a_store(demo_folder, tmp_path, capsys):
    """A Zarr group that is not a pose-pipeline store (no schema_version, joint_set) is not ours."""
    other = tmp_path / "other.zarr"
    zarr_json = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"dataset": "mpii"}})
    before = user_folder(other, {"zarr.json": zarr_json, "image/zarr.json": "{}"})
    assert cli.main(convert_args(demo_folder, other)) == 1
    refusal(capsys.readouterr().err, other, "convert", "no zarr.json with a store's schema_version and joint_set")
    assert folder_digest(other) == before


def test_demo_data_refuses_a_look_alike_and_reruns_over_what_snakemake_leaves(tmp_path, capsys):
    args = ["demo-data", "--train", "2", "--val", "1", "--test", "0", "--image-size", "64", "--no-progress"]
    mine = tmp_path / "mine"
    before = user_folder(mine, {"mpii_release.mat": "", "val_split.mat": "", "images/000000.jpg": ""})
    assert cli.main([*args, "--out", str(mine)]) == 1
    refusal(capsys.readouterr().err, mine, "demo-data", "no marker file pose-pipeline-demo-data.json")
    assert folder_digest(mine) == before

    demo = tmp_path / "demo"
    assert cli.main([*args, "--out", str(demo)]) == 0
    written = folder_digest(demo)
    for name in ("mpii_release.mat", "val_split.mat"):  # the demo_data rule's declared outputs
        (demo / name).unlink()
    shutil.rmtree(demo / "images")
    assert cli.main([*args, "--out", str(demo)]) == 0
    assert folder_digest(demo) == written  # the same seed: the same bytes, marker included


def test_atomic_folder_marks_what_it_writes_and_replaces_only_marked_folders(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_folder(out, "thing", {"seed": 1}) as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "pose-pipeline-thing.json"]
    assert atomic.is_output_of(out, "thing") and not atomic.is_output_of(out, "other")
    marker = json.loads((out / "pose-pipeline-thing.json").read_text())
    assert marker == {"stage": "thing", "package_version": __version__, "seed": 1}
    with pytest.raises(UserError, match="not written by pose-pipeline other"):
        with atomic.atomic_folder(out, "other"):
            pass
    with pytest.raises(RuntimeError), atomic.atomic_folder(out, "thing") as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("a failing stage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old output, no partial
    assert (out / "a.txt").read_text() == "a"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "train.zarr"
    stale = tmp_path / f".train.zarr.partial-{dead_pid()}"
    live = tmp_path / f".train.zarr.partial-{os.getppid()}"  # a live process, not ours
    other = tmp_path / f".val.zarr.partial-{dead_pid()}"
    for folder in (stale, live, other):
        folder.mkdir()
    make_random_store(out, num_samples=4, canvas_size=16, shard_size=2)
    assert not stale.exists()
    assert live.exists() and other.exists()


def test_a_parked_old_store_is_put_back_when_the_run_died_between_renames(tmp_path):
    """The fallback swap (file systems without RENAME_EXCHANGE) parks the old store for an
    instant; if the run dies there, the next run restores it before anything else."""
    out = tmp_path / "train.zarr"
    make_random_store(out, num_samples=4, canvas_size=16, shard_size=2)
    parked = tmp_path / f".train.zarr.old-{dead_pid()}"
    os.replace(out, parked)
    atomic.remove_stale_partials(out)
    assert is_store(out) and len(open_store(out)) == 4
    assert not parked.exists()


def test_replace_folder_without_exchange_support(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out = tmp_path / "train.zarr"
    make_random_store(out, num_samples=4, canvas_size=16, shard_size=2)
    make_random_store(out, num_samples=6, canvas_size=16, shard_size=2)
    assert len(open_store(out)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.zarr"]


def store_is_complete(path: Path) -> bool:
    """Every array present, each as long as the root metadata says, and metadata readable."""
    store = open_store(path)
    n = len(store)
    group = store.group
    return (
        all(name in group and group[name].shape[0] == n for name in PER_SAMPLE_ARRAYS if name not in OPTIONAL_ARRAYS)
        and store.images(0, n).shape[0] == n
    )


REPLACER = textwrap.dedent("""
    from helpers import make_random_store  # tests/ is on the child's PYTHONPATH
    # alternate two stores of different sizes at the same path for ever
    size = 8
    while True:
        make_random_store({out!r}, num_samples=size, canvas_size=16, shard_size=2)
        print(size, flush=True)
        size = 20 if size == 8 else 8
""")


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_killing_a_replacement_at_random_instants_always_leaves_a_complete_store(tmp_path):
    """SIGKILL a process that replaces a store over and over, at 50 random instants: the path
    always holds a complete store, one of the two it alternates between."""
    out = tmp_path / "train.zarr"
    make_random_store(out, num_samples=8, canvas_size=16, shard_size=2)
    script = REPLACER.format(out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
    rng = random.Random(0)
    replaced = 0
    for trial in range(50):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
        proc.stdout.readline()  # imports done, one store written: the loop is running
        replaced += 1
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert store_is_complete(out), f"trial {trial}: {sorted(os.listdir(out))}"
        assert len(open_store(out)) in (8, 20)
    # the next run cleans what the killed ones left
    atomic.remove_stale_partials(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.zarr"]
    assert replaced == 50


def test_a_conversion_that_keeps_nothing_is_an_error(tmp_path, capsys):
    demo = tmp_path / "demo"
    demo_data.generate(demo, seed=1, train=2, val=1, image_size=64, progress=False)
    for image in (demo / "images").iterdir():
        image.write_bytes(b"")
    out = tmp_path / "train.zarr"
    assert cli.main(convert_args(demo, out) + ["--on-bad-sample", "skip"]) == 1
    assert "are bad, nothing to store" in capsys.readouterr().err
    assert not out.exists()
    assert (tmp_path / "train.bad_samples.csv").exists()


def test_user_error_is_what_check_replaceable_raises(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("")
    with pytest.raises(UserError):
        atomic.check_replaceable(tmp_path / "a", "thing", lambda p: False)
    atomic.check_replaceable(tmp_path / "a", "thing", lambda p: True)  # recognised: no error


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--context", "0", "--context: must be a finite number from 1 to 3, got 0"),
        ("--context", "-1", "--context: must be a finite number from 1 to 3, got -1"),
        ("--shard-size", "0", "--shard-size: must be a whole number at least 1, got 0"),
        ("--canvas-size", "8", "--canvas-size: must be a whole number from 32 to 2048, got 8"),
    ],
)
def test_converter_options_outside_the_schema_bounds_are_refused(demo_folder, tmp_path, capsys, option, value, message):
    out = tmp_path / "train.zarr"
    assert cli.main(convert_args(demo_folder, out) + [option, value]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_coordinates_beyond_float32_or_far_outside_the_image_are_bad_samples(tmp_path, capsys):
    from pose_pipeline.data.demo import release_file as demo_release
    from pose_pipeline.data.formats import mpii

    demo = tmp_path / "demo"
    demo_data.generate(demo, seed=1, train=3, val=1, image_size=64, progress=False)
    people = mpii.read_release(demo / "mpii_release.mat")
    keypoints = people.keypoints.copy()
    keypoints[0, 3] = (1e39, 10.0)  # finite in float64, inf in float32
    keypoints[1, 2] = (500.0, 20.0)  # 64-pixel image: a joint 7 image widths away
    boxes = np.array([[10.0, 10.0, 30.0, 30.0]] * len(people.image_names))
    (demo / "mpii_release.mat").write_bytes(
        demo_release.release_mat_bytes(
            list(people.image_names),
            keypoints,
            people.annotated,
            boxes,
            people.scale / 1.25,
            people.center,
            np.ones(len(people.image_names)),
        )
    )
    out = tmp_path / "train.zarr"
    assert cli.main(convert_args(demo, out) + ["--split", "all", "--on-bad-sample", "skip"]) == 0
    listed = (tmp_path / "train.bad_samples.csv").read_text()
    assert "beyond 1e+06 pixels" in listed and "far outside the 64x64 image" in listed
    assert len(open_store(out)) == 2


def test_libjpeg_warnings_stay_with_their_own_decode_across_calls_and_forked_workers(tmp_path):
    """The capture file is reused within a process and made anew in a forked worker: a warning
    never lands on the next image, nor on another worker's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pose_pipeline.data.images import load_image

    demo, damaged = demo_with_a_damaged_jpeg(tmp_path)
    good = demo / "images" / "000000.jpg"
    assert load_image(damaged)[1].startswith("corrupt JPEG")  # the parent's capture file exists now
    paths = [damaged, good] * 8
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        problems = [problem for _, problem in pool.map(load_image, paths)]
        worker_files = set(pool.map(_capture_inode, range(4)))
    assert [p.startswith("corrupt JPEG") for p in problems] == [True, False] * 8
    assert load_image(good)[1] == ""
    assert _capture_inode() not in worker_files  # a forked worker's offset is not the parent's


def _capture_inode(_=None) -> int:
    from pose_pipeline.data.images import _capture_file

    return os.fstat(_capture_file().fileno()).st_ino


def demo_with_a_damaged_jpeg(tmp_path) -> tuple[Path, Path]:
    """Four demo images, 000001.jpg damaged in the middle: (demo folder, that image)."""
    demo = tmp_path / "demo"
    demo_data.generate(demo, seed=1, train=3, val=1, image_size=96, progress=False)
    damaged = demo / "images" / "000001.jpg"
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = b"\xff\x00" * 20  # still ends with the EOI marker
    damaged.write_bytes(bytes(data))
    return demo, damaged


def test_a_jpeg_corrupt_in_the_middle_is_a_bad_sample_not_garbage_pixels(tmp_path):
    from pose_pipeline.data.images import load_image

    demo, damaged = demo_with_a_damaged_jpeg(tmp_path)
    image, problem = load_image(damaged)
    assert image is None and problem.startswith(f"corrupt JPEG {damaged}: Corrupt JPEG data")
    good, problem = load_image(demo / "images" / "000000.jpg")
    assert good is not None and problem == ""

    out = tmp_path / "train.zarr"
    assert cli.main(convert_args(demo, out) + ["--split", "all", "--on-bad-sample", "skip"]) == 0
    assert "000001.jpg,corrupt JPEG" in (tmp_path / "train.bad_samples.csv").read_text()
    assert list(open_store(out).image_name) == ["000000.jpg", "000002.jpg", "000003.jpg"]
