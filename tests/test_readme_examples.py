"""The README's Python examples run as written, each in its own interpreter, in order (later ones load "my-tcmp")."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_examples_run_as_written(tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 3, "the README's model, streaming and pipeline examples"
    for number, code in enumerate(blocks, start=1):
        script = tmp_path / f"readme_example_{number}.py"
        script.write_text(code, encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"README example {number} failed:\n{code}\n{result.stderr[-3000:]}"
        assert result.stdout.strip(), f"README example {number} printed nothing"
    assert (tmp_path / "my-tcmp" / "model.safetensors").is_file()
