"""`pip install ./clients/python` leaves the source tree as it was: no build/, no *.egg-info.

Builds a wheel of a copy of the package with pip (the build backend comes from the package
index, as for any install) and compares the copy's files before and after."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def files(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


class Packaging(unittest.TestCase):
    def test_pip_install_writes_nothing_into_the_source_tree(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "python"
            os.mkdir(copy)
            for item in ("pyproject.toml", "README.md", "src"):
                source = HERE / item
                if source.is_dir():
                    shutil.copytree(source, copy / item, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(source, copy / item)
            before = files(copy)
            out = Path(tmp) / "wheels"
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                 "-w", str(out), str(copy)],
                check=True,
            )
            self.assertEqual(len(list(out.glob("firefly_client-*.whl"))), 1)
            self.assertEqual(files(copy) - before, set(), "pip wrote into the source tree")
