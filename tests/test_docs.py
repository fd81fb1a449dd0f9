"""Every code example of README.md and docs/*.md runs, and the output it documents is checked.

The conventions, as docs/index.md ("Examples are tested") states them for authors:

- The ```python blocks of a page are its examples; other fences (bash, text, ini, console)
  are not run. A block whose first line starts with ``>>>`` is a doctest.
- The blocks of a page run in order in one namespace, as the cells of a notebook or one
  script would: a later block uses the names an earlier one defined. The namespace's
  ``__name__`` is ``"__main__"``.
- A page runs in a folder of its own, a copy of one prepared for the module, which holds
  what examples name: ``volume.zarr`` (channels ``em`` uint8 and ``mask`` uint16, the demo
  volume of ``ndframework boss-emulator --demo``, chunks of 16 x 128 x 128) and a
  ``neurodata.cfg`` naming collection ``demo``, experiment ``synthetic``, channels ``em,
  mask`` on a BOSS emulator started once for the module with that same volume; the token is
  in ``INTERN_TOKEN``, not in the file.
- A ```text block that follows a python block with nothing but blank lines between is what
  that block prints: it must match the block's standard output, line ends stripped, where
  ``...`` matches any text (doctest's ELLIPSIS). Doctest blocks are checked by doctest.
- ``<!-- docs-test: file NAME.py -->`` on the line before a python block writes it to
  ``NAME.py`` in the page's folder (which is on ``sys.path``) instead of running it.
- ``<!-- docs-test: skip (reason) -->`` on the line before a fence skips that block; the
  reason is required.
- README.md's python blocks, concatenated in order, are saved as a script and run with
  ``python script.py`` in a fresh copy of the prepared folder: it must exit 0, and each
  documented output must match whole lines of the script's output, each after the last.
"""

from __future__ import annotations

import builtins
import contextlib
import doctest
import gc
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
TOKEN = "ndf-docs-test-token-81c4e0d2"

pytestmark = pytest.mark.timeout(180)


# -- reading a page ---------------------------------------------------------------------------


@dataclass
class Example:
    """One ```python block of a page."""

    page: Path
    line: int
    """Line (1-based) of the block's first line of code."""
    code: str
    skip: str | None = None
    """Why the block does not run, from a ``docs-test: skip (reason)`` comment."""
    file: str | None = None
    """The file the block is written to instead of being run (``docs-test: file NAME``)."""
    output: str | None = None
    """The ```text block that follows it: what it prints."""
    output_line: int | None = None

    @property
    def doctest(self) -> bool:
        return self.code.lstrip().startswith(">>>")

    @property
    def where(self) -> str:
        return f"{_relative(self.page)}:{self.line}"


@dataclass
class _Fence:
    language: str
    line: int
    code: str
    directive: str | None
    follows_previous: bool
    """Only blank lines lie between this fence and the end of the previous one."""


@dataclass
class Page:
    path: Path
    examples: list[Example] = field(default_factory=list)


class DocsSyntaxError(ValueError):
    """A docs-test comment that the harness does not understand."""


_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
_SKIP = re.compile(r"^skip\s*\((?P<reason>[^()]*\S[^()]*)\)$")
_FILE = re.compile(r"^file\s+(?P<name>[A-Za-z_][\w-]*\.py)$")


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _fences(path: Path, text: str) -> list[_Fence]:
    lines = text.splitlines()
    fences: list[_Fence] = []
    directive: str | None = None
    directive_line = 0
    blank_since_fence = False  # only blank lines since the last fence closed
    index = 0
    while index < len(lines):
        line = lines[index]
        opened = _OPEN.match(line)
        if opened:
            indent, fence = len(opened["indent"]), opened["fence"]
            language = (opened["info"].split() or [""])[0].lower()
            body: list[str] = []
            index += 1
            while index < len(lines):
                closing = lines[index].strip()
                if closing.startswith(fence) and set(closing) == {fence[0]}:
                    break
                text_line = lines[index]
                body.append(text_line[indent:] if text_line[:indent].strip() == ""
                            else text_line.lstrip())
                index += 1
            fences.append(_Fence(language, index - len(body) + 1, "\n".join(body) + "\n",
                                 directive, blank_since_fence and bool(fences)))
            directive = None
            blank_since_fence = True
            index += 1
            continue
        comment = _DIRECTIVE.match(line)
        if comment:
            directive, directive_line = comment["body"].strip(), index + 1
            if not (_SKIP.match(directive) or _FILE.match(directive)):
                raise DocsSyntaxError(
                    f"{_relative(path)}:{directive_line}: unknown docs-test comment "
                    f"{directive!r}; known are 'skip (reason)', with a reason, and "
                    "'file NAME.py'")
        elif line.strip():
            if directive is not None:
                raise DocsSyntaxError(
                    f"{_relative(path)}:{directive_line}: a docs-test comment must be on the "
                    "line just before a fence")
            blank_since_fence = False
        index += 1
    return fences


def parse(path: Path, text: str | None = None) -> Page:
    """The page's python examples, each with its skip reason and documented output."""
    text = path.read_text(encoding="utf-8") if text is None else text
    page = Page(path)
    previous: Example | None = None
    for fence in _fences(path, text):
        if fence.language in ("python", "py"):
            previous = Example(path, fence.line, fence.code)
            if fence.directive is not None:
                skip, file = _SKIP.match(fence.directive), _FILE.match(fence.directive)
                previous.skip = skip["reason"].strip() if skip else None
                previous.file = file["name"] if file else None
            page.examples.append(previous)
            continue
        if fence.directive is not None and _FILE.match(fence.directive):
            raise DocsSyntaxError(f"{_relative(path)}:{fence.line - 1}: a docs-test file "
                                  f"comment must come before a python block")
        if fence.language == "text" and previous is not None and fence.follows_previous \
                and previous.output is None and not previous.doctest:  # doctest checks its own
            previous.output, previous.output_line = fence.code, fence.line
        previous = None
    return page


# -- checking output ----------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


def output_matches(want: str, got: str) -> bool:
    """Whether ``got`` matches the documented ``want``, where ``...`` matches any text."""
    return doctest.OutputChecker().check_output(_normalise(want), _normalise(got),
                                                doctest.ELLIPSIS)


def outputs_in_order(wanted: list[str], got: str) -> bool:
    """Whether each of ``wanted`` matches whole lines of ``got``, each after the last, where
    ``...`` matches any text."""
    text = _normalise(got)
    position = 0
    for want in wanted:
        pieces = _normalise(want).rstrip("\n").split("...")
        pattern = re.compile("^" + "(?s:.*?)".join(map(re.escape, pieces)) + "$", re.MULTILINE)
        found = pattern.search(text, position)
        if found is None:
            return False
        position = found.end()
    return True


def _mismatch(example: Example, got: str) -> str:
    return (f"{example.where}: the block's output does not match the text block at line "
            f"{example.output_line}\n--- documented\n{_normalise(example.output or '')}"
            f"--- printed\n{_normalise(got)}")


# -- running a page ----------------------------------------------------------------------------


def run_example(example: Example, namespace: dict) -> None:
    """Run one block in ``namespace``; fail with its place in the page if it raises or its
    output differs from the documented one."""
    if example.doctest:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(example.code, namespace, example.where, str(example.page),
                                  example.line - 1)
        report = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test, out=report.write, clear_globs=False)
        if runner.failures:
            pytest.fail(f"{example.where}: doctest failed\n{report.getvalue()}", pytrace=False)
        return
    code = compile("\n" * (example.line - 1) + example.code, str(example.page), "exec")
    printed = io.StringIO()
    failure = None
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)  # noqa: S102 - the documentation's own examples
    except (Exception, SystemExit) as error:
        failure = (f"{example.where}: the example raised {type(error).__name__}\n"
                   + "".join(traceback.format_exception(error))
                   + f"--- printed before\n{printed.getvalue()}")
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if example.output is not None and not output_matches(example.output, printed.getvalue()):
        pytest.fail(_mismatch(example, printed.getvalue()), pytrace=False)


def _page_id(path: Path) -> str:
    return _relative(path)


def _example_pages() -> list[Path]:
    return [path for path in PAGES if parse(path).examples]


# -- the prepared folder -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A folder with what the examples name, and the BOSS emulator its neurodata.cfg names."""
    import ndframework as ndf
    from ndframework.bossemu import BossEmulator
    from ndframework.synthetic import demo_volume

    folder = tmp_path_factory.mktemp("prepared")
    volume = demo_volume()  # what `ndframework boss-emulator --demo` serves
    bounds = ndf.Box.from_shape(volume["em"].shape)
    sink = ndf.ZarrSink.create(folder / "volume.zarr", {n: a.dtype for n, a in volume.items()},
                               bounds, chunk_shape=(16, 128, 128))
    sink.write(bounds, volume)
    with BossEmulator(token=TOKEN) as boss:
        boss.create_volume("demo", "synthetic", volume)
        (folder / "neurodata.cfg").write_text(textwrap.dedent(f"""\
            [Default]
            protocol = {boss.protocol}
            host = {boss.host}

            [Parallel]
            collection = demo
            experiment = synthetic
            channels = em, mask
            """))
        yield folder


@pytest.fixture
def page_folder(prepared, tmp_path, monkeypatch):
    folder = tmp_path / "page"
    shutil.copytree(prepared, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("INTERN_TOKEN", TOKEN)
    return folder


# -- the tests ---------------------------------------------------------------------------------


def write_file(example: Example, folder: Path) -> None:
    """Write a ``docs-test: file`` block into the page's folder, for later blocks."""
    (folder / example.file).write_text(example.code, encoding="utf-8")  # type: ignore[operator]
    importlib.invalidate_caches()


@pytest.mark.parametrize("path", [p for p in _example_pages() if p != README], ids=_page_id)
def test_page_examples_run(path, page_folder, monkeypatch):
    import ndframework.executors

    monkeypatch.syspath_prepend(str(page_folder))
    # a page's executors registered by name stay the page's own
    monkeypatch.setattr(ndframework.executors, "_factories",
                        dict(ndframework.executors._factories))
    modules = set(sys.modules)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        for example in parse(path).examples:
            if example.file is not None:
                write_file(example, page_folder)
            elif example.skip is None:
                run_example(example, namespace)
    finally:
        namespace.clear()
        for name in set(sys.modules) - modules:  # the page's own modules, from its folder
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(
                    str(page_folder)):
                del sys.modules[name]
        gc.collect()


def readme_script(page: Page) -> tuple[str, list[tuple[int, Example]]]:
    """The README's python blocks as one script, and where each starts in it."""
    parts: list[str] = []
    starts: list[tuple[int, Example]] = []
    line = 1
    for example in page.examples:
        if example.skip is not None or example.file is not None:
            continue
        code = example.code
        if example.doctest:
            code = doctest.script_from_examples(code)
        starts.append((line, example))
        parts.append(code)
        line += code.count("\n") + 1
    return "\n".join(parts), starts


def test_readme_examples_run_as_a_script(page_folder):
    page = parse(README)
    script, starts = readme_script(page)
    assert starts, "README.md has no python example"
    for example in page.examples:
        if example.file is not None and example.skip is None:
            write_file(example, page_folder)
    path = page_folder / "readme_examples.py"
    path.write_text(script, encoding="utf-8")
    began = time.monotonic()
    completed = subprocess.run([sys.executable, str(path)], cwd=page_folder,
                               capture_output=True, text=True, timeout=150,
                               env={**os.environ, "INTERN_TOKEN": TOKEN})
    origin = "\n".join(f"  script line {line}: {example.where}" for line, example in starts)
    assert completed.returncode == 0, (
        f"python readme_examples.py exited {completed.returncode} after "
        f"{time.monotonic() - began:.1f} s\n{completed.stderr[-6000:]}\n"
        f"--- stdout\n{completed.stdout[-3000:]}\n--- the script's blocks\n{origin}")
    wanted = [example for _, example in starts if example.output is not None]
    assert outputs_in_order([e.output for e in wanted], completed.stdout), (  # type: ignore[misc]
        "README.md's documented outputs ("
        + ", ".join(f"line {e.output_line}" for e in wanted)
        + f") do not all appear, in order, in the script's output\n--- printed\n"
        f"{completed.stdout}")


def test_pages_are_understood():
    """Every page parses (docs-test comments included), and the README has examples."""
    for path in PAGES:
        parse(path)
    assert parse(README).examples


# -- the harness itself ------------------------------------------------------------------------

SAMPLE = '''\
# A page

```python
x = 6 * 7
print(x)
```

```text
42
```

<!-- docs-test: skip (needs a Slurm cluster) -->
```python
raise SystemExit("never run")
```

Prose between a block and a text block: that text is no output.

```python
print("a", x)
```

And so:

```text
not an output
```

  ```python
  >>> x + 1
  43
  ```

<!-- docs-test: file helper.py -->
```python
VALUE = 1
```
'''


def test_the_parser_reads_blocks_outputs_and_skips():
    page = parse(Path("sample.md"), SAMPLE)
    assert [e.line for e in page.examples] == [4, 14, 20, 30, 36]
    assert page.examples[0].output == "42\n"
    assert page.examples[1].skip == "needs a Slurm cluster"
    assert page.examples[2].output is None
    assert page.examples[3].doctest and page.examples[3].code == ">>> x + 1\n43\n"
    assert page.examples[4].file == "helper.py" and page.examples[4].code == "VALUE = 1\n"


def test_a_wrong_output_or_an_error_fails_the_page():
    examples = parse(Path("sample.md"), SAMPLE).examples
    namespace: dict = {"__builtins__": builtins}
    run_example(examples[0], namespace)
    run_example(examples[3], namespace)
    wrong = Example(Path("sample.md"), 1, "print(41)\n", output="42\n", output_line=4)
    with pytest.raises(pytest.fail.Exception, match="does not match"):
        run_example(wrong, namespace)
    with pytest.raises(pytest.fail.Exception, match="sample.md:30: doctest failed"):
        run_example(Example(Path("sample.md"), 30, ">>> x\n41\n"), namespace)
    with pytest.raises(pytest.fail.Exception, match=r"sample.md:7: the example raised Name"):
        run_example(Example(Path("sample.md"), 7, "undefined_name\n"), namespace)


def test_output_checks():
    assert output_matches("took ... s\nok\n", "took 1.5 s  \nok")
    assert not output_matches("ok\n", "ok\nmore\n")
    assert outputs_in_order(["b", "d ..."], "a\nb\nc\nd 4\ne\n")
    assert outputs_in_order(["b", "c"], "a\nb\nc\n")
    assert outputs_in_order(["x ...\ny", "z"], "x 1\nw\ny\nz\n")
    assert not outputs_in_order(["d ...", "b"], "a\nb\nc\nd 4\ne\n")
    assert not outputs_in_order(["b"], "ab\n")
    assert not outputs_in_order(["b", "b"], "b\n")


@pytest.mark.parametrize("text, message", [
    ("<!-- docs-test: skip -->\n```python\npass\n```\n", "unknown docs-test comment"),
    ("<!-- docs-test: skip () -->\n```python\npass\n```\n", "unknown docs-test comment"),
    ("<!-- docs-test: run twice -->\n```python\npass\n```\n", "unknown docs-test comment"),
    ("<!-- docs-test: skip (slow) -->\nprose\n```python\npass\n```\n", "just before a fence"),
    ("<!-- docs-test: file a.txt -->\n```python\npass\n```\n", "unknown docs-test comment"),
    ("<!-- docs-test: file a.py -->\n```text\npass\n```\n", "before a python block"),
])
def test_a_bad_docs_test_comment_is_refused(text, message):
    with pytest.raises(DocsSyntaxError, match=message):
        parse(Path("bad.md"), text)
