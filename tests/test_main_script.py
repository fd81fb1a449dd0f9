"""A processor class defined in the user's ``__main__`` script works in worker processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np


def test_a_processor_defined_in_main_runs_under_process_executor(tmp_path):
    script = tmp_path / "my_analysis.py"
    script.write_text(textwrap.dedent("""
        import os
        import numpy as np
        import ndframework as ndf

        class Brightest(ndf.BlockProcessor):
            channels = ("em",)

            def setup(self):
                self.offset = 1000

            def process(self, data, block):
                return (int(data["em"].max()) + self.offset, os.getpid())

            def reduce(self, results):
                return max(value for value, pid in results.values())

        if __name__ == "__main__":
            volume = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
            source = ndf.InMemorySource({"em": volume})
            result = ndf.Pipeline(source, Brightest(), tiler=ndf.RegularTiler((4, 8, 8)),
                                  executor=ndf.ProcessExecutor(2)).run()
            pids = {pid for value, pid in result.values.values()}
            print(result.ok, len(result.done), result.reduced, os.getpid() in pids)
    """))
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["True", "8", str(8 * 16 * 16 - 1 + 1000), "False"]


def test_a_function_defined_in_main_runs_under_process_executor(tmp_path):
    script = tmp_path / "count.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import ndframework as ndf

        def count_bright(data):
            return int((data["em"] > 100).sum())

        if __name__ == "__main__":
            volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
            result = ndf.Pipeline(ndf.InMemorySource({"em": volume}), count_bright,
                                  tiler=ndf.RegularTiler((2, 8, 8)),
                                  executor=ndf.ProcessExecutor(2)).run()
            print(sum(result.values.values()))
    """))
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(int((np.arange(256) % 256 > 100).sum()))
