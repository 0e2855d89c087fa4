"""The README's integrator examples on the command line run as written (from a copy of the repo's paths)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from crisis.services import REPO_ROOT
from tests.readme_examples import readme_example


def test_the_unmapped_codes_loop_example_runs_as_written(tmp_path: Path) -> None:
    for folder in ("tests", "deploy", "examples"):
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_example("cli")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    with (tmp_path / "unmapped.csv").open(encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [["center_id", "field", "code", "calls"],
                                            ["lancaster-ne", "nature_code", "MEDLE", "1"]]
    decisions = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert len(decisions) == 10
    assert any("nature_code:25B6V -> violence_or_threat_to_others" in d["reasons"] for d in decisions)
    what_if = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert what_if["calls"] == 6
