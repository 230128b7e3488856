"""The deployment package check against Lambda's limits (a zip written here; no processes)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from lambdapool._deploy import PackageSize, package_size
from lambdapool._limits import UNZIPPED_LIMIT_BYTES


def test_a_small_package_is_within_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "package.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", "print('hello')\n")
        archive.writestr("numpy/core.py", "x" * 10_000)
        archive.writestr("numpy/other.py", "y" * 5_000)
    size = package_size(path)
    assert size.unzipped_bytes == 15 + 15_000
    assert size.biggest[0] == ("numpy", 15_000)
    assert not size.over_limit
    assert "WARNING" not in size.report()


def test_a_package_over_a_limit_is_reported_with_its_biggest_contributors(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    big = UNZIPPED_LIMIT_BYTES // 2 + 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # zeros compress to almost nothing
        archive.writestr("pandas/huge.bin", b"\0" * big)
        archive.writestr("scipy/huge.bin", b"\0" * big)
        archive.writestr("app.py", b"pass\n")
    size = package_size(path)
    assert size.zipped_bytes < 50 * 2**20 < size.unzipped_bytes
    assert size.over_limit
    report = size.report()
    assert "WARNING: over Lambda's limits" in report
    lines = report.splitlines()
    assert "pandas" in lines[2] and "scipy" in lines[3] and "app.py" in lines[4]


def test_the_zipped_limit_counts_too() -> None:
    assert PackageSize(51 * 2**20, 60 * 2**20, [("torch", 60 * 2**20)]).over_limit
