"""The fault suite (issue 26): each fault ends in one line naming the file and the cause, and
leaves everything outside the output byte-identical. A refused write (a full disk, a file-size
limit) keeps the earlier output; two converts into one store, a killed convert's workers,
predictions scored against another store, an image link that leads nowhere, a NaN loss before
any checkpoint and a text file given as a checkpoint each end as cleanly."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scipy.io
from helpers import loss_exploding_at, make_random_store, random_checkpoint, settings

from pose_pipeline import cli
from pose_pipeline.data.demo import generate as demo_data
from pose_pipeline.data.store import lock_store
from pose_pipeline.train import loop as train_module
from pose_pipeline.util.output_errors import OutputError, writing

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
ERROR_LINE = re.compile(r"pose-pipeline (?P<stage>\S+): error: (?P<path>.+): (?P<cause>[^:]+) \(nothing replaced\)")
CAUSES = {"full": os.strerror(errno.ENOSPC), "limit": os.strerror(errno.EFBIG)}
FILLER = "filler"


def digest(folder: Path) -> dict[str, str]:
    """Every file and folder below `folder` (hidden ones too) but the filler and TensorBoard's
    event files (each session appends a new one): relative name -> sha256, or "folder"."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
        if p.name != FILLER and "tensorboard" not in p.parts
    }


def error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    demo_data.generate(out, seed=3, train=6, val=2, image_size=96, progress=False)
    return out


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, demo) -> Path:
    """A random store, a checkpoint and each stage's finished output, made once: each test
    copies what it needs beside the output it makes a stage fail to replace."""
    folder = tmp_path_factory.mktemp("earlier")
    make_random_store(folder / "a.zarr", seed=0)
    make_random_store(folder / "b.zarr", seed=1)  # the same count and joints, other people
    model = random_checkpoint(folder / "m.pt", None)
    make_random_store(folder / "train.zarr", num_samples=4, canvas_size=16, shard_size=2)
    assert cli.main(predict_args(model, folder / "a.zarr", folder)) == 0
    assert cli.main(infer_args(model, demo / "images", folder / "inf")) == 0
    assert cli.main(train_args(folder / "a.zarr", folder / "run", epochs=1)) == 0
    return folder


def train_args(store: Path, out: Path, **training) -> list[str]:
    paths = ["--train-store", str(store), "--out", str(out)]
    return ["train", "--settings", json.dumps(settings(**training)), *paths, "--device", "cpu", "--no-progress"]


def predict_args(checkpoint: Path, store: Path, folder: Path) -> list[str]:
    """predict's command line, its outputs folder/p.mat and folder/p.csv."""
    paths = ["--store", str(store), "--out-mat", str(folder / "p.mat"), "--out-csv", str(folder / "p.csv")]
    return ["predict", "--checkpoint", str(checkpoint), *paths, "--device", "cpu"]


def infer_args(checkpoint: Path, images: Path, out: Path, *extra: str) -> list[str]:
    paths = ["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out)]
    return ["infer", *paths, "--device", "cpu", *extra]


def convert_args(demo: Path, out: Path, *extra: str) -> list[str]:
    paths = ["--annotations", str(demo / "mpii_release.mat"), "--images", str(demo / "images"), "--out", str(out)]
    return ["convert", "mpii", *paths, "--canvas-size", "256", "--workers", "1", "--no-progress", *extra]


# ------------------------------------------------------------- a full disk, a file-size limit


def _convert(folder: Path, earlier: Path, demo: Path) -> tuple[list[str], Path]:
    shutil.copytree(earlier / "train.zarr", folder / "train.zarr")
    return convert_args(demo, folder / "train.zarr"), folder / "train.zarr"


def _predict(folder: Path, earlier: Path, demo: Path) -> tuple[list[str], Path]:
    for name in ("p.mat", "p.csv"):
        shutil.copy(earlier / name, folder / name)
    # the new .mat fits the room left, the .csv not: neither may replace the earlier one
    return predict_args(earlier / "m.pt", earlier / "a.zarr", folder), folder / "p.csv"


def _train(folder: Path, earlier: Path, demo: Path) -> tuple[list[str], Path]:
    shutil.copytree(earlier / "run", folder / "run")
    # other settings: a fresh run, whose first checkpoint would replace the earlier run's last.pt
    return train_args(earlier / "a.zarr", folder / "run", epochs=1, lr=1e-3), folder / "run" / "checkpoints" / "last.pt"


def _infer(folder: Path, earlier: Path, demo: Path) -> tuple[list[str], Path]:
    shutil.copytree(earlier / "inf", folder / "inf")
    return infer_args(earlier / "m.pt", demo / "images", folder / "inf", "--draw"), folder / "inf"


def _infer_video(folder: Path, earlier: Path, demo: Path) -> tuple[list[str], Path]:
    """infer --draw of a video: OpenCV's video writer fails silently, the check after it may not."""
    import cv2

    shutil.copytree(earlier / "inf", folder / "inf")
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 96))
    for i in range(24):
        writer.write(cv2.imread(str(demo / "images" / f"{i % 8:06d}.jpg")))
    writer.release()
    # the video is written before the results, and reaches the limit first: it is the one named
    return infer_args(earlier / "m.pt", video, folder / "inf", "--draw"), folder / "inf" / "drawings" / "clip.mp4"


# stage -> (its earlier output and command line, bytes left free on the full disk, file-size limit)
STAGES = {
    "convert": (_convert, 64 << 10, 64 << 10),  # its crop shards are larger
    "predict": (_predict, 16 << 10, 16 << 10),  # more than the .mat, less than the .csv
    "train": (_train, 64 << 10, 64 << 10),  # its checkpoints are larger
    "infer": (_infer, 16 << 10, 2 << 10),  # less than its drawings
    "infer_video": (_infer_video, 16 << 10, 2 << 10),  # less than its annotated video
}


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a disk a test can fill (mounting needs root; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, free: int) -> None:
    """Leave `free` bytes of `disk` unused: a filler file takes the rest."""
    room = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / FILLER, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, room - free)


def file_size_limited(limit: int):
    """A child's preexec: files may not grow past `limit` bytes, and a write past it fails with
    EFBIG instead of killing the process by SIGXFSZ."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def check_refusal(line: str, stage: str, named: Path, cause: str) -> None:
    match = ERROR_LINE.fullmatch(line)
    assert match, line
    assert (match["stage"], match["cause"]) == (stage.partition("_")[0], cause)
    shown = Path(match["path"])
    assert shown == named or (named.suffix in (".zarr", "") and named in shown.parents), line


@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_is_one_line_naming_the_output_and_keeps_the_earlier_one(
    stage, small_disk, earlier, demo, capsys, monkeypatch
):
    # TensorBoard's writer thread would outlive the failed run in this process, and hold the disk
    monkeypatch.setattr(train_module, "open_tensorboard", lambda path: None)
    scenario, free, _ = STAGES[stage]
    argv, named = scenario(small_disk, earlier, demo)
    fill(small_disk, free)
    before = digest(small_disk)
    capsys.readouterr()
    assert cli.main(argv) == 1
    check_refusal(error_line(capsys.readouterr().err), stage, named, CAUSES["full"])
    assert digest(small_disk) == before


@pytest.mark.parametrize("stage", STAGES)
def test_a_file_size_limit_is_one_line_naming_the_output_and_keeps_the_earlier_one(stage, tmp_path, earlier, demo):
    scenario, _, limit = STAGES[stage]
    argv, named = scenario(tmp_path, earlier, demo)
    before = digest(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pose_pipeline", *argv],
        preexec_fn=file_size_limited(limit),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    check_refusal(error_line(done.stderr), stage, named, CAUSES["limit"])
    assert digest(tmp_path) == before


def test_a_video_opencv_fails_to_write_for_no_reason_given_is_one_line_and_keeps_the_earlier_output(
    tmp_path, earlier, demo, capsys, monkeypatch
):
    """OpenCV's writer drops the frames without a word, and the system refuses nothing: the
    drawings' check still finds the video short."""
    import cv2

    argv, _ = _infer_video(tmp_path, earlier, demo)
    real = cv2.VideoWriter

    class Dropping:  # every frame lost, as on a full disk
        def __init__(self, *args):
            self.inner = real(*args)

        def isOpened(self):
            return self.inner.isOpened()

        def write(self, frame):
            pass

        def release(self):
            self.inner.release()

    monkeypatch.setattr(cv2, "VideoWriter", Dropping)
    before = digest(tmp_path)
    capsys.readouterr()
    assert cli.main(argv) == 1
    line = error_line(capsys.readouterr().err)
    assert line.endswith(
        "error: drawings/clip.mp4, the annotated video: OpenCV wrote 0 of its 24 frames "
        "(the cause not reported; nothing replaced)"
    ), line
    assert digest(tmp_path) == before


def test_a_full_disk_under_tensorboard_is_one_warning_and_the_run_goes_on(small_disk, capfd, caplog):
    """The events only mirror log.csv: TensorBoard's thread dying of a full disk is one warning
    naming the events folder, no traceback (the thread's included), and no more events."""
    pytest.importorskip("tensorboard")
    from pose_pipeline.train.log import open_tensorboard, write_tensorboard

    events = small_disk / "run" / "tensorboard"
    tensorboard = open_tensorboard(events)
    fill(small_disk, 0)
    row = {"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_score": 50.0, "lr": 1e-3, "images_per_s": 9.0}
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        for epoch in range(1, 41):  # the first events may fit in the last page of the file
            write_tensorboard(tensorboard, {**row, "epoch": epoch})
        tensorboard.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"{events}: {CAUSES['full']}: no more TensorBoard events in this run (log.csv goes on)"
    ]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "raised, shown",
    [
        (OSError(errno.ENOSPC, "No space left on device", "OUT/.tmp"), "OUT/final"),  # the temporary's name
        (OSError(errno.EFBIG, "File too large"), "OUT/final"),  # write() names no file
        (OSError(errno.EDQUOT, "Disk quota exceeded", "OUT/.part/sub/f"), "OUT/final/sub/f"),  # in a folder
        (RuntimeError("No space left on device (os error 28)"), "OUT/final"),  # zarrs
        (RuntimeError("Disk quota exceeded (os error 122)"), "OUT/final"),
        (OSError(errno.ENOSPC, "No space left on device", "ELSEWHERE/f"), "ELSEWHERE/f"),  # room is the output's
        (OSError(errno.EACCES, "Permission denied", "ELSEWHERE/f"), None),  # an input refused: as it was
        (RuntimeError("zarrs: bad chunk"), None),
        (OSError(errno.EIO, "Input/output error", "OUT/.tmp"), None),
    ],
)
def test_writing_names_the_final_output_of_a_refused_write(raised, shown):
    targets = {Path("OUT/.tmp"): Path("OUT/final"), Path("OUT/.part"): Path("OUT/final")}
    with pytest.raises(Exception) as caught, writing(targets):
        raise raised
    if shown is None:
        assert caught.value is raised
    else:
        assert isinstance(caught.value, OutputError)
        assert str(caught.value) == f"{shown}: {os.strerror(error_number(raised))} (nothing replaced)"


def error_number(exc: BaseException) -> int:
    return exc.errno if isinstance(exc, OSError) else int(re.search(r"os error (\d+)", str(exc))[1])


# -------------------------------------------------------------------------------- convert


@contextlib.contextmanager
def convert_waiting_on_a_fifo(demo: Path, tmp_path: Path, workers: int):
    """A `convert` process that holds its store's lock, its (`workers`) cropping one image for
    ever: the image is a FIFO no one writes to."""
    images = tmp_path / "demo"
    shutil.copytree(demo, images)
    (images / "images" / "000003.jpg").unlink()
    os.mkfifo(images / "images" / "000003.jpg")
    out = tmp_path / "train.zarr"
    argv = [*convert_args(images, out), "--workers", str(workers)]
    proc = subprocess.Popen([sys.executable, "-m", "pose_pipeline", *argv], env=ENV, stderr=subprocess.PIPE)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie (in a container nothing may reap an orphan that died)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)
    return value


def test_a_second_convert_into_one_store_is_refused_naming_the_first(demo, tmp_path, capsys):
    with convert_waiting_on_a_fifo(demo, tmp_path, workers=1) as (first, out):
        lock = out.with_name(f".{out.name}.lock")
        wait_for(lambda: lock.exists() and "pid" in lock.read_text(), 60, "the first convert's lock")
        assert cli.main(convert_args(demo, out)) == 1
        line = error_line(capsys.readouterr().err)
        assert f"error: {out}: pose-pipeline convert pid {first.pid} on " in line and "is writing here" in line
        assert not out.exists()
    with lock_store(out, "pose-pipeline convert"):  # the lock went with its holder
        pass
    assert cli.main(convert_args(demo, out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "train.zarr"]  # no lock file left


def test_a_killed_converts_workers_die_with_it(demo, tmp_path):
    with convert_waiting_on_a_fifo(demo, tmp_path, workers=2) as (parent, _):
        workers = wait_for(lambda: len(children(parent.pid)) == 2 and children(parent.pid), 60, "two workers")
        try:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
            wait_for(lambda: not any(alive(pid) for pid in workers), 5, f"workers {workers} gone")
        finally:
            for pid in filter(alive, workers):  # the test's own leftovers, should it fail
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ predictions, inputs, training


@pytest.mark.parametrize("name", ["p.mat", "p.csv"])
@pytest.mark.parametrize("gt, refused", [("a.zarr", False), ("b.zarr", True)])
def test_score_refuses_predictions_of_another_store_with_the_same_count_and_joints(
    earlier, tmp_path, gt, refused, name, capsys
):
    preds = earlier / name
    if name == "p.mat":
        assert set(scipy.io.loadmat(preds)) >= {"preds", "store_fingerprint"}  # the reference reads `preds`
        assert ("preds", (24, 16, 2), "double") in scipy.io.whosmat(preds)
    else:  # the same image names in both stores: only the fingerprint tells them apart
        assert preds.read_text().startswith("# store_fingerprint: ")
    capsys.readouterr()
    rc = cli.main(["score", "--preds", str(preds), "--gt", str(earlier / gt), "--out", str(tmp_path / "s.csv")])
    assert rc == (1 if refused else 0)
    if refused:
        line = error_line(capsys.readouterr().err)
        assert f"error: {preds}: predicted from another store than {earlier / gt} (store fingerprint" in line
        assert not (tmp_path / "s.csv").exists()


def test_a_prediction_csv_without_a_store_fingerprint_still_scores(earlier, tmp_path):
    """A CSV of before the fingerprint line (or not predict's) is read as before: no check."""
    lines = (earlier / "p.csv").read_text().splitlines(keepends=True)
    assert lines[0].startswith("# store_fingerprint: ") and lines[1].startswith("index,image,joint,x,y")
    old = tmp_path / "old.csv"
    old.write_text("".join(lines[1:]))
    for gt in ("a.zarr", "b.zarr"):
        out = tmp_path / f"{gt}.csv"
        assert cli.main(["score", "--preds", str(old), "--gt", str(earlier / gt), "--out", str(out)]) == 0


@pytest.mark.parametrize(
    "link, target, reason", [("x.jpg", "x.jpg", os.strerror(errno.ELOOP)), ("y.jpg", "gone.jpg", "missing image")]
)
def test_an_image_link_that_leads_nowhere_is_listed_in_skipped_csv(earlier, demo, tmp_path, link, target, reason):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(demo / "images" / "000000.jpg", images)
    (images / link).symlink_to(target)
    out = tmp_path / "out"
    assert cli.main(infer_args(earlier / "m.pt", images, out)) == 0
    rows = (out / "skipped.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{link},,") and reason in rows[1], rows


@pytest.mark.parametrize("bad_call, kept", [(1, False), (3, True)])  # checkpoint_every 2
def test_a_nan_loss_names_a_checkpoint_only_if_there_is_one(earlier, tmp_path, monkeypatch, bad_call, kept):
    monkeypatch.setattr(
        train_module, "heatmap_loss", loss_exploding_at(train_module.heatmap_loss, (bad_call,), float("nan"))
    )
    out = tmp_path / "run"
    with pytest.raises(train_module.NonFiniteLoss) as caught:
        train_module.train(settings(), earlier / "a.zarr", None, out, device="cpu", progress=False)
    last = out / "checkpoints" / "last.pt"
    assert last.exists() == kept
    if kept:
        assert f"the last good checkpoint {last} is kept" in str(caught.value)
    else:
        assert "no checkpoint was written before it" in str(caught.value) and "last.pt" not in str(caught.value)


@pytest.mark.parametrize("text", [b"model: hourglass\n", b'{"state_dict": {}}', b"checkpoint of epoch 3\n", b""])
def test_a_text_file_given_as_a_checkpoint_is_not_a_pytorch_checkpoint(earlier, tmp_path, text, capsys):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(text)
    assert cli.main(predict_args(checkpoint, earlier / "a.zarr", tmp_path)) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"pose-pipeline predict: error: {checkpoint}: not a PyTorch checkpoint (")
    assert "pickled code" not in line and "weights_only" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
