"""Obtaining Transformers' common tests: a download that cannot happen is an error saying so, never a skip."""

import pytest
import transformers

from . import transformers_suite


def test_an_impossible_download_fails_naming_the_release(monkeypatch, tmp_path):
    monkeypatch.setenv("TCMP_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as without network: pip finds nothing
    message = f"cannot download the source distribution of transformers=={transformers.__version__}"
    with pytest.raises(transformers_suite.TransformersTestsUnavailable, match=message):
        transformers_suite.ensure_tests()
    assert not (tmp_path / "transformers-tests" / transformers.__version__ / transformers_suite.PACKAGE).exists()
