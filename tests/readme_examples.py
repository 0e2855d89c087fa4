"""The README's runnable examples, extracted by their marker comment, for the tests that run them."""

from __future__ import annotations

import re

from crisis.services import REPO_ROOT


def readme_example(name: str) -> str:
    """The fenced bash block that follows ``<!-- example: NAME ...-->`` in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {re.escape(name)}\b[^>]*-->\n```bash\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no example block {name!r}"
    return match.group(1)
