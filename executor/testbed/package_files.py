"""The testbed's files/: the test guest's sources, helper programs run by path, and the daemons'
configuration templates. Shipped as package data (pyproject.toml), so an installed wheel has them."""

from __future__ import annotations

import string
from pathlib import Path

FILES_DIR = Path(__file__).resolve().parent / "files"


def filled(template: str, **values: object) -> str:
    """files/<template> with each ${name} in it replaced by values[name]. A name the template uses and
    `values` lacks raises KeyError: a config is never written half filled."""
    return string.Template((FILES_DIR / template).read_text()).substitute(values)
