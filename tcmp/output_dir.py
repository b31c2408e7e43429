"""
The output-folder rule of the training scripts (`run_pretrain.py`, `run_finetune.py`, `run_main_job.py`): a run
writes only into a folder that is new, empty, or one of our own runs (it holds `RUN_MARKER`), unless told to write
over what is there. Files a user keeps in a folder given by mistake are never overwritten silently.
"""

import json
import os
import sys
import time

from .errors import PreflightError


RUN_MARKER = "tcmp_run.json"
"""Written into the output folder when a run starts: the folder is then one of ours, which a later run may reuse."""
WRITE_PROBE = ".tcmp_write_probe_"
"""Start of the name of the file each process writes and deletes at once to check a folder is writable (ignored)."""


def check_output_dir(folder: str, flag: str, allowed: bool, override: str = "--overwrite_output_dir") -> None:
    """
    Refuse (`PreflightError`, one line naming `flag`, the folder and some of its files) to write into a folder that
    holds anything but one of our runs, unless `allowed` (the script's `override`, or continuing a run).
    """
    if allowed or not os.path.isdir(folder):
        return
    names = sorted(name for name in os.listdir(folder) if not name.startswith(WRITE_PROBE))
    if not names or RUN_MARKER in names:
        return
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise PreflightError(
        f"the output folder ({flag}) {folder} holds files that are not from a tcmp run ({shown}; no {RUN_MARKER}): "
        f"choose a new or empty folder, or pass {override} to write over them"
    )


def mark_own_run(folder: str) -> None:
    """Write `RUN_MARKER` into `folder` (created if needed): the script and the time the run started."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, RUN_MARKER), "w") as handle:
        json.dump({"script": os.path.basename(sys.argv[0]), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)


__all__ = ["RUN_MARKER", "WRITE_PROBE", "check_output_dir", "mark_own_run"]
