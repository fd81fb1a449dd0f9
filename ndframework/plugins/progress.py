"""A progress bar (tqdm): blocks done, blocks failed, and the rate."""

from __future__ import annotations

from typing import IO, Any

from ..hookspecs import hookimpl

__all__ = ["ProgressBar"]


class ProgressBar:
    """Shows a tqdm bar over the run's blocks, with the failed count beside it.

    Parameters
    ----------
    file:
        Where to draw (default: standard error).
    disable:
        True hides the bar; None hides it when ``file`` is not a terminal.
    **tqdm_options:
        Passed to `tqdm.tqdm`.
    """

    def __init__(self, file: IO[str] | None = None, disable: bool | None = False,
                 **tqdm_options: Any) -> None:
        self.options = dict(file=file, disable=disable, unit="block", **tqdm_options)
        self.bar: Any = None
        self.failed = 0

    @hookimpl
    def ndf_before_run(self, run: Any) -> None:
        from tqdm.auto import tqdm  # a notebook widget in Jupyter, text elsewhere

        self.failed = 0
        self.bar = tqdm(total=run.block_count, desc="blocks", **self.options)
        self.bar.set_postfix(failed=0, refresh=False)

    @hookimpl
    def ndf_after_block(self, run: Any, block: Any, outcome: Any) -> None:
        self.bar.update(1)

    @hookimpl
    def ndf_on_block_error(self, run: Any, block: Any, outcome: Any) -> None:
        self.failed += 1
        self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    @hookimpl
    def ndf_after_run(self, run: Any, result: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
