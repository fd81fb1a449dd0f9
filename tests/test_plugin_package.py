"""The example plugin package, ``examples/plugin_package``: installed with pip into a folder
of its own, it joins the runs of a new Python process through its entry point alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "plugin_package"

RUNS = textwrap.dedent("""
    import json, sys
    from importlib.metadata import entry_points

    import numpy as np
    import ndframework as ndf

    class Flaky(ndf.BlockProcessor):
        retry_on = (TimeoutError,)

        def setup(self):
            self.tried = set()

        def process(self, data, block):
            if block.key == "0_0_4" and block.key not in self.tried:
                self.tried.add(block.key)
                raise TimeoutError("the server is busy")
            if block.key == "0_4_4":
                raise ValueError("a bad block")
            return int(data["em"].sum())

    source = ndf.InMemorySource({"em": np.ones((4, 8, 8), np.uint8)})
    options = dict(tiler=ndf.RegularTiler((4, 4, 4)), executor="serial", journal=sys.argv[1])
    ndf.Pipeline(source, Flaky(), **options).run()  # 4 blocks: one retried, one failed
    ndf.Pipeline(source, Flaky(), max_failures=1, **options).run()  # 3 skipped; it stops
    ndf.Pipeline(source, Flaky(), load_entrypoints=False, restart=True, **options).run()
    print(json.dumps([[entry.name, entry.value, entry.dist.name]
                      for entry in entry_points(group="ndframework")]))
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package, installed by pip into a folder (from a copy: pip builds in the tree),
    offline: built with this environment's setuptools and wheel (the ``test`` extra)."""
    folder = tmp_path_factory.mktemp("plugin_package")
    source, target = folder / "source", folder / "site"
    shutil.copytree(PACKAGE, source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-input",
         "--no-build-isolation", "--no-index", "--disable-pip-version-check",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=100)
    return target


@pytest.mark.timeout(150)
def test_the_example_plugin_package_joins_every_run_through_its_entry_point(installed,
                                                                            tmp_path):
    report = tmp_path / "report.jsonl"
    environment = {**os.environ, "PYTHONPATH": str(installed),
                   "BLOCK_TIMER_REPORT": str(report)}
    process = subprocess.run([sys.executable, "-c", RUNS, str(tmp_path / "run.sqlite")],
                             env=environment, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    found = json.loads(process.stdout.splitlines()[-1])
    assert ["block_timer", "ndframework_block_timer:plugin", "ndframework-block-timer"] in found

    first, second = [json.loads(line) for line in report.read_text().splitlines()]
    assert first["run_id"] == second["run_id"] and first["session"] != second["session"]
    assert {name: first[name] for name in ("blocks", "done", "failed", "skipped", "retries",
                                           "stopped", "error")} == {
        "blocks": 4, "done": 3, "failed": 1, "skipped": 0, "retries": {"retry_on": 1},
        "stopped": None, "error": None}
    assert sorted(key for key, _ in first["slowest"]) == ["0_0_0", "0_0_4", "0_4_0"]
    seconds = [seconds for _, seconds in first["slowest"]]
    assert seconds == sorted(seconds, reverse=True) and min(seconds) >= 0
    assert {name: second[name] for name in ("done", "failed", "skipped", "retries",
                                            "slowest", "stopped", "error")} == {
        "done": 0, "failed": 1, "skipped": 3, "retries": {}, "slowest": [],
        "stopped": "max_failures=1 reached: 1 blocks had failed, so no more were handed out",
        "error": None}
    # the third run, with load_entrypoints=False, went without it
