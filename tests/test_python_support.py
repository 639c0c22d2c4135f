"""The Python versions we claim are the ones the code runs on.

`python_requires` in setup.cfg is the one claim; its classifiers, README.md and ruff's
`target-version` must say the same, and vermin (which knows in which version each stdlib
module, member and syntax appeared) must find nothing in the shipped packages that needs a
newer Python. `datetime.UTC` (3.11) once made the server fail at import on 3.10.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _floor() -> str:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    requires = setup["options"]["python_requires"].strip()
    assert requires.startswith(">="), requires
    return requires[2:]


def test_the_claims_agree():
    floor = _floor()
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    classifiers = setup["metadata"]["classifiers"]
    versions = re.findall(r"Programming Language :: Python :: (3\.\d+)", classifiers)
    assert versions and min(versions, key=lambda v: int(v.split(".")[1])) == floor
    assert f"Python {floor}+" in (ROOT / "README.md").read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'target-version\s*=\s*"py(\d)(\d+)"', pyproject).groups() == tuple(
        floor.split("."))


def test_no_code_needs_a_newer_python():
    floor = _floor()
    result = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--no-tips", "--violations", "--eval-annotations",
         f"--target={floor}-", "server", "litellm_dmr"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
