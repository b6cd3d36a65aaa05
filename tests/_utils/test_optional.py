"""One helper for optional dependencies, one install hint."""

from __future__ import annotations

import pytest

from danemap._utils.optional import find_optional, import_optional, install_hint
from danemap.errors import DependencyError


def test_import_optional_returns_the_module():
    assert import_optional("json").__name__ == "json"


def test_missing_extra_names_the_pip_command():
    with pytest.raises(DependencyError, match=r"registration needs the package 'antspyx', which "
                                              r"cannot be imported .*: "
                                              r"pip install 'danemap\[ants\]'$"):
        import_optional("danemap_no_such_module", extra="ants", package="antspyx",
                        purpose="registration")
    with pytest.raises(ImportError):  # DependencyError is an ImportError too
        import_optional("danemap_no_such_module.sub")


def test_find_optional_without_importing(tmp_path):
    assert find_optional("danemap")[0].name == "danemap"
    with pytest.raises(DependencyError, match=r"needs the package 'x-y>=1', which is not "
                                              r"installed: pip install 'x-y>=1'$"):
        find_optional("danemap_no_such_module", package="x-y>=1")
    with pytest.raises(DependencyError, match=r"pip install 'danemap\[dask\]'"):
        find_optional("danemap_no_such.module", extra="dask")


def test_install_hint():
    assert install_hint("ants", extra="ants") == "pip install 'danemap[ants]'"
    assert install_hint("nilearn") == "pip install 'nilearn'"
