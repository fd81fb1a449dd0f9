"""A processor class defined in the user's ``__main__`` script works in worker processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest


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


# -- scripts without the __main__ guard, as Nd-Multicore scripts were written --------------

UNGUARDED = """
    import os
    import numpy as np
    import ndframework as ndf

    print("script started", os.getpid(), flush=True)

    def count_bright(data):
        return int((data["em"] > 100).sum()), os.getpid()

    volume = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    result = ndf.Pipeline(ndf.InMemorySource({{"em": volume}}), count_bright,
                          tiler=ndf.RegularTiler((1, 8, 8)), executor={executor}).run()
    print("result", result.ok, sum(v for v, pid in result.values.values()),
          os.getpid() in {{pid for v, pid in result.values.values()}})
"""


def run_script(tmp_path, text, timeout=120):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(text))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
def test_a_script_without_the_main_guard_runs_once_with_worker_processes(tmp_path):
    completed = run_script(tmp_path, UNGUARDED.format(executor="ndf.ProcessExecutor(2)"))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # the script ran once: workers were forked, not started by re-running it
    assert sum(line.startswith("script started") for line in lines) == 1, completed.stdout
    expected = int((np.arange(256) % 256 > 100).sum())
    assert lines[-1] == f"result True {expected} False"  # run by workers, not the script
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("executor, what", [
    ("ndf.ProcessExecutor(2, start_method='spawn')", "worker processes started with 'spawn'"),
    ("ndf.DaskExecutor(2)", "the LocalCluster's worker processes"),
])
def test_a_script_without_the_main_guard_that_cannot_fork_fails_at_once(tmp_path, executor,
                                                                         what):
    completed = run_script(tmp_path, UNGUARDED.format(executor=executor))
    assert completed.returncode == 1
    assert completed.stdout.count("script started") == 1  # no worker ran the script
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("ndframework.errors.ConfigError: this run starts at module level "
                           f"of {tmp_path / 'unguarded.py'}, line 12 without")
    assert what in last and 'put the code that runs the pipeline under `if __name__ == ' \
        '"__main__":`' in last


def test_which_lines_of_a_script_are_guarded(tmp_path):
    from ndframework.executors._main_script import _guarded_lines

    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""\
        import ndframework
        for i in range(2):
            run(i)
        if "__main__" == __name__:
            run(
                3)
        else:
            run(4)
        try:
            if __name__ == "__main__":
                run(5)
        finally:
            pass
    """))
    lines = _guarded_lines(str(script))
    assert [n for n in sorted(lines) if lines[n][0]] == [4, 5, 6, 10, 11]
    assert lines[3] == (False, 3) and lines[8] == (False, 8) and lines[12] == (False, 9)
    assert lines[6] == (True, 5)  # the second line of a call: its statement's first line


def test_a_run_from_pytest_or_a_function_is_not_an_unguarded_script():
    from ndframework.executors._main_script import unguarded_script

    assert unguarded_script() is None


@pytest.mark.parametrize("layout, flagged", [("tool/__main__.py", False), ("tool.py", True)])
def test_python_m_of_a_package_is_not_run_again_by_workers_but_of_a_module_is(tmp_path, layout,
                                                                             flagged):
    # multiprocessing re-imports `python -m module`'s module in its workers, not a
    # package's __main__ (spawn.py, _fixup_main_from_name)
    path = tmp_path / layout
    path.parent.mkdir(exist_ok=True)
    if layout.startswith("tool/"):
        (path.parent / "__init__.py").write_text("")
    path.write_text("from ndframework.executors._main_script import unguarded_script\n"
                    "print(unguarded_script() is not None)\n")
    completed = subprocess.run([sys.executable, "-m", "tool"], capture_output=True, text=True,
                               timeout=60, cwd=tmp_path)
    assert completed.stdout.strip() == str(flagged), completed.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")
def test_a_script_without_the_guard_that_runs_from_a_thread_runs_once(tmp_path):
    text = UNGUARDED.replace(
        "    result = ndf.Pipeline(", "    import threading\n    results = []\n"
        "    def run():\n        results.append(ndf.Pipeline(").replace(
        "executor={executor}).run()", "executor={executor}).run())\n"
        "    thread = threading.Thread(target=run)\n    thread.start()\n    thread.join()\n"
        "    result = results[0]")
    completed = run_script(tmp_path, text.format(executor="ndf.ProcessExecutor(2)"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("script started") == 1, completed.stdout
    expected = int((np.arange(256) % 256 > 100).sum())
    assert completed.stdout.splitlines()[-1] == f"result True {expected} False"
