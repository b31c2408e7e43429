"""An interrupted dataset build (the process killed mid-build) leaves no cache that a later build takes as complete."""

import os
import subprocess
import sys
import time

from tcmp.data import build_umd
from tests.data.conftest import write_manifest

INTERRUPTED = """
import sys, time
sys.path.insert(0, {repo!r})
import tcmp.data.umd as umd
original = umd.read_manifest
def slow(path, report=None):
    for i, row in enumerate(original(path, report)):
        if i == 50:
            open({flag!r}, "w").close()
            time.sleep(60)
        yield row
umd.read_manifest = slow
umd.build_umd({manifest!r}, cache_dir={cache!r})
"""


def test_interrupted_build_is_not_reused(tmp_path):
    folder = tmp_path / "umd"
    path = write_manifest(folder, [{"dialogue_id": f"d{k}", "utterances": [{"text": "x"}] * 3} for k in range(100)])
    flag, cache = str(tmp_path / "flag"), str(tmp_path / "c")
    code = INTERRUPTED.format(repo=os.getcwd(), flag=flag, manifest=str(path), cache=cache)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not os.path.exists(flag) and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert os.path.exists(flag)
    finally:
        process.kill()
        process.wait()
    data, report = build_umd(str(path), cache_dir=cache, return_report=True)
    assert len(data["train"]) == 100 and not report.splits["train"].cached
