"""
Checks run when a training script starts, before any data is built or model loaded: the output folders can be
created and written, the disk has room, and the checkpoint to resume from was saved completely. During the run,
`room_to_save` checks the disk again before every save.
"""

import contextlib
import json
import logging
import os
import shutil
import sys
import zipfile

from transformers.trainer_utils import sort_checkpoints

from .checkpoints import CHECKSUM_FILE, verify_checksums
from .errors import SCRIPT_ERRORS, CheckpointError, DiskSpaceError, PreflightError
from .output_dir import RUN_MARKER, WRITE_PROBE, check_output_dir, mark_own_run


logger = logging.getLogger(__name__)

GB = 1024**3
TRAINER_STATE = "trainer_state.json"
TRAINER_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")
"""Files the Trainer saves with `torch.save` (zip archives) in a one-process checkpoint."""


CREATED_FOLDERS: list[str] = []
"""Folders the preflight of this process created (the topmost new one of each path): `run_as_script` removes those
still empty when the script fails, so that a failed run leaves no empty output folder behind."""


def check_writable(folder: str, purpose: str) -> None:
    """Create `folder` if needed (remembered in `CREATED_FOLDERS`), then write and delete a probe file in it."""
    top = os.path.abspath(folder)
    while not os.path.exists(os.path.dirname(top)) and os.path.dirname(top) != top:
        top = os.path.dirname(top)
    created = not os.path.exists(top)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise PreflightError(f"the {purpose} {folder} cannot be created: {error.strerror or error}") from None
    if created:
        CREATED_FOLDERS.append(top)
    probe = os.path.join(folder, f"{WRITE_PROBE}{os.getpid()}")
    try:
        with open(probe, "wb") as handle:
            handle.write(b"probe")
        os.remove(probe)
    except OSError as error:
        raise PreflightError(f"the {purpose} {folder} is not writable: {error.strerror or error}") from None


def free_space_problem(folder: str, min_free_gb: float, purpose: str) -> str | None:
    """Why the disk holding `folder` is too full (less than `min_free_gb` GB free), or None."""
    free = shutil.disk_usage(folder).free
    if free >= min_free_gb * GB:
        return None
    return (
        f"the disk holding the {purpose} {folder} has {free / GB:.2f} GB free, but at least {min_free_gb:g} GB "
        "are needed (--min_free_disk_gb)"
    )


def check_free_space(folder: str, min_free_gb: float, purpose: str) -> None:
    """At least `min_free_gb` GB free on the disk holding `folder`."""
    problem = free_space_problem(folder, min_free_gb, purpose)
    if problem:
        raise PreflightError(f"{problem}: free some space or choose another --output_dir")


GO_ON = "free some space, then continue with --resume_from_checkpoint last"


def check_room_to_save(args, folder: str, step: int) -> None:
    """Refuse (`DiskSpaceError`) to start a save into `folder` with less than `args.min_free_disk_gb` GB free."""
    problem = free_space_problem(args.output_dir, args.min_free_disk_gb, "output folder (--output_dir)")
    if problem:
        raise DiskSpaceError(f"{problem}: stopped at step {step} before saving {folder}; {GO_ON}")


def failed_save(args, folder: str, step: int, error: Exception) -> DiskSpaceError | None:
    """The `DiskSpaceError` naming the disk when a save into `folder` failed because it filled up; else None."""
    problem = free_space_problem(args.output_dir, args.min_free_disk_gb, "output folder (--output_dir)")
    if problem is None:
        return None
    return DiskSpaceError(f"{problem}: saving {folder} at step {step} failed ({error}), so it is incomplete; {GO_ON}")


@contextlib.contextmanager
def room_to_save(args, folder: str, step: int):
    """
    Around a save into `folder` during a run: `check_room_to_save` before, and a failure on a disk that filled up
    meanwhile becomes `failed_save`'s `DiskSpaceError` (the half-written folder is then incomplete, which
    `--resume_from_checkpoint last` skips). Other failures pass through; saves made before stay complete.
    """
    check_room_to_save(args, folder, step)
    try:
        yield
    except Exception as error:
        disk_error = failed_save(args, folder, step, error)
        if disk_error is None:
            raise
        raise disk_error from error


def trainer_files(args) -> tuple[str, ...]:
    """The `torch.save` files a checkpoint of this run must hold: none with `--save_only_model`; one RNG state per
    process; the optimizer and scheduler unless DeepSpeed or FSDP save them in their own layout."""
    if args.save_only_model:
        return ()
    rng = ("rng_state.pth",) if args.world_size == 1 else tuple(f"rng_state_{i}.pth" for i in range(args.world_size))
    return rng if args.deepspeed or args.fsdp else ("optimizer.pt", "scheduler.pt", *rng)


def checkpoint_problem(folder: str, expected: tuple[str, ...] = TRAINER_FILES) -> str | None:
    """
    Why a Trainer checkpoint folder is incomplete (a save interrupted by a kill, a damaged file), or None: its
    trainer_state.json (written last) must parse, weights must match their checksums, `expected` files be complete.
    """
    state = os.path.join(folder, TRAINER_STATE)
    try:
        with open(state, encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"{state} is missing (the Trainer writes it last, so the save was interrupted)"
    except (OSError, ValueError) as error:
        return f"{state} is unreadable: {error}"
    weights = [name for name in os.listdir(folder) if name.endswith(".safetensors")]
    if weights and not os.path.isfile(os.path.join(folder, CHECKSUM_FILE)):
        return f"{os.path.join(folder, CHECKSUM_FILE)} is missing: the model weights cannot be checked"
    try:
        verify_checksums(folder)
    except CheckpointError as error:
        return str(error)
    for name in expected:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{path} is missing"
        if not zipfile.is_zipfile(path):
            return f"{path} is truncated or corrupted (not a complete torch.save archive)"
    return None


def resume_checkpoint(output_dir: str, requested: str | None, expected: tuple[str, ...] = TRAINER_FILES) -> str | None:
    """
    The folder `--resume_from_checkpoint` names, after checking it is complete; `last` means the newest complete
    `checkpoint-N` in `output_dir`, in the Trainer's own order (`sort_checkpoints`; newer incomplete ones are skipped
    with a warning naming what is wrong).
    """
    if requested is None:
        return None
    if requested != "last":
        problem = checkpoint_problem(requested, expected) if os.path.isdir(requested) else "no such folder"
        if problem:
            raise PreflightError(f"--resume_from_checkpoint {requested} cannot be resumed: {problem}")
        return requested
    for folder in reversed(sort_checkpoints(output_dir)):
        problem = checkpoint_problem(folder, expected)
        if problem is None:
            return folder
        logger.warning("--resume_from_checkpoint last: skipping the incomplete %s: %s", folder, problem)
    raise PreflightError(f"--resume_from_checkpoint last: no complete checkpoint-* folder in {output_dir}")


def check_earlier_run(args) -> None:
    """
    An `output_dir` holding checkpoints of an earlier run is never overwritten silently: training there needs
    `--resume_from_checkpoint` (continue) or `--overwrite_output_dir` (those checkpoints are deleted, start over).
    """
    if not args.do_train or args.resume_from_checkpoint is not None or not os.path.isdir(args.output_dir):
        return
    earlier = sort_checkpoints(args.output_dir)
    if not earlier:
        return
    if not args.overwrite_output_dir:
        names = ", ".join(os.path.basename(folder) for folder in earlier)
        raise PreflightError(
            f"the output folder (--output_dir) {args.output_dir} holds checkpoints of an earlier run ({names}): "
            "continue it with --resume_from_checkpoint last, or start over with --overwrite_output_dir (deletes them)"
        )
    if args.should_save:
        logger.warning("--overwrite_output_dir: deleting %d checkpoint(s) of an earlier run in %s", len(earlier), args.output_dir)
        for folder in earlier:
            shutil.rmtree(folder, ignore_errors=True)


def preflight(args) -> None:
    """
    Check a run's `TCMPTrainingArguments` before any work: `output_dir` (and `TENSORBOARD_LOGGING_DIR` when
    TensorBoard logs elsewhere) writable with `min_free_disk_gb` GB free, without an earlier run's checkpoints
    unless resumed or overwritten (`check_earlier_run`), and holding nothing but our own runs unless resumed or
    overwritten (`check_output_dir`; the main process then marks it as ours); `resume_from_checkpoint` is resolved
    to a complete folder.
    """
    check_earlier_run(args)
    resuming = args.resume_from_checkpoint is not None
    check_output_dir(args.output_dir, "--output_dir", args.overwrite_output_dir or resuming)
    folders = [(args.output_dir, "output folder (--output_dir)")]
    logging_dir = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if logging_dir and "tensorboard" in (args.report_to or []):
        folders.append((os.path.expanduser(logging_dir), "TensorBoard logging folder (TENSORBOARD_LOGGING_DIR)"))
    for folder, purpose in folders:
        check_writable(folder, purpose)
        check_free_space(folder, args.min_free_disk_gb, purpose)
    if args.should_save:
        mark_own_run(args.output_dir)
    args.resume_from_checkpoint = resume_checkpoint(args.output_dir, args.resume_from_checkpoint, trainer_files(args))


def remove_created_folders() -> None:
    """Remove the folders in `CREATED_FOLDERS` that are still empty but for our run marker (with their empty subfolders)."""
    for top in reversed(CREATED_FOLDERS):
        for folder, subfolders, files in os.walk(top, topdown=False):
            if os.listdir(folder) == [RUN_MARKER]:
                os.remove(os.path.join(folder, RUN_MARKER))
            if not os.listdir(folder):
                os.rmdir(folder)
    CREATED_FOLDERS.clear()


def run_as_script(main) -> None:
    """
    Call a script's `main()`. Errors whose message names the bad flag, file, folder or value (`tcmp.errors.SCRIPT_ERRORS`:
    `ArgumentsError`, `PreflightError`, `DataError`, `CheckpointError`) end the script with that one line and exit
    status 1, without a traceback; Ctrl-C ends it with one line (how to resume, after training started) and exit
    status 130. A failed run removes the output folders it created if they are still empty. Transformers' progress
    bars per weights file (loading, writing shards) are off; the Trainer's and the data builds' stay.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    script = os.path.basename(sys.argv[0])
    try:
        main()
    except SCRIPT_ERRORS as error:
        remove_created_folders()
        sys.exit(f"{script}: error: {error}")
    except KeyboardInterrupt as interrupt:
        remove_created_folders()
        print(f"{script}: interrupted" + (f": {interrupt}" if str(interrupt) else ""), file=sys.stderr)
        sys.exit(130)
    except BaseException:
        remove_created_folders()
        raise
