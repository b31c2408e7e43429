"""
Transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), taken at test time from the source
distribution of the installed Transformers release (its wheel ships no `tests/` tree) and cached; never copied into
this repository.

`pip download --no-binary :all: --no-deps transformers==<installed>` fetches the sdist once; its top-level
`tests/*.py` are unpacked into `~/.cache/tcmp/transformers-tests/<version>/transformers_common_tests/` (or under
`$TCMP_CACHE`) as a package. `test_modeling_common.py` and `test_configuration_common.py` also import three modules
of the repository's test tree that the sdist does not ship; where they are missing, minimal stand-ins are written
beside them (`STAND_INS`), each saying what it replaces. If the download is impossible, importing this module fails
with a message saying so.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers


PACKAGE = "transformers_common_tests"
NEEDED = ("test_modeling_common.py", "test_configuration_common.py")

STAND_INS = {
    "exporters/test_export.py": '''"""Stand-in: the sdist lacks tests/exporters; TCMP's export is tested in tests/test_export.py."""


class ExportTesterMixin:
    """The repository's export tests (torch.export / ONNX / ExecuTorch backends) are not in the sdist."""
''',
    "generation/test_utils.py": '''"""Stand-in: the sdist lacks tests/generation; TCMP generates nothing, so no test of it may inherit this."""


class GenerationTesterMixin:
    """The repository's generation tests (not in the sdist)."""
''',
    "utils/test_configuration_utils.py": '''"""Stand-in: the sdist lacks tests/utils; `ConfigTester.check_config_arguments_init` skips composite configs
(TCMP has sub-configs), the only reader of `config_common_kwargs`."""

config_common_kwargs = {}
''',
}


def cache_root() -> Path:
    base = os.environ.get("TCMP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tcmp")
    return Path(base) / "transformers-tests" / transformers.__version__


class TransformersTestsUnavailable(RuntimeError):
    """The common tests of the installed Transformers release could not be obtained."""


def _download_sdist(version: str, into: str) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
        f"transformers=={version}", "-d", into,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TransformersTestsUnavailable(f"`{' '.join(command)}` could not run: {error}") from None
    archives = sorted(Path(into).glob(f"transformers-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        raise TransformersTestsUnavailable(
            f"cannot download the source distribution of transformers=={version} (needed for its common model "
            f"tests; the wheel has no tests/): `{' '.join(command)}` exited with {result.returncode}:\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    return archives[0]


def _unpack_tests(archive: Path, version: str, package: Path):
    prefix = f"transformers-{version}/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix) and m.name.endswith(".py")]
        for member in members:
            relative = member.name[len(prefix) :]
            target = package / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    missing = [name for name in NEEDED if not (package / name).is_file()]
    if missing:
        raise TransformersTestsUnavailable(f"{archive.name} has no tests/{missing[0]}")
    for relative, text in STAND_INS.items():
        target = package / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for folder in [package, *(p for p in package.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()


def ensure_tests() -> Path:
    """The folder holding the cached `transformers_common_tests` package (downloaded and unpacked on first use)."""
    root = cache_root()
    package = root / PACKAGE
    if all((package / name).is_file() for name in NEEDED):
        return root
    version = transformers.__version__
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        staged = Path(scratch) / PACKAGE
        staged.mkdir()
        _unpack_tests(_download_sdist(version, scratch), version, staged)
        shutil.rmtree(package, ignore_errors=True)
        os.replace(staged, package)
    return root


def load(module: str):
    """`transformers_common_tests.<module>` from the cache, e.g. `load("test_modeling_common")`."""
    root = str(ensure_tests())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{PACKAGE}.{module}")
