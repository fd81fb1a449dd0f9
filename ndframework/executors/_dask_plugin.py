"""The worker plugin that opens a run session in every Dask worker, imported only where
``distributed`` is (by a connecting `DaskExecutor`, and by the workers)."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ._session import WorkerSession

__all__ = ["SessionPlugin"]


class SessionPlugin(WorkerPlugin):
    """Opens run ``session`` in each worker process, the workers
    that join later (a worker restarted by its nanny) included: the scheduler hands its
    registered plugins to every worker that connects. Scattered data, by contrast, is lost
    with the last worker that held it, and the tasks that need it then wait for ever."""

    idempotent = True  # registering the same session again changes nothing

    def __init__(self, session: WorkerSession, sharing: int = 1) -> None:
        self.session = session
        self.sharing = sharing
        """Worker processes of the run that share one machine's default budget of
        decoded chunks (those of a local cluster; 1 where each has a machine's share)."""

    def setup(self, worker: Any) -> None:
        from ..storage._chunk_cache import share_default_chunk_cache

        share_default_chunk_cache(self.sharing)
        self.session.open()

    def teardown(self, worker: Any) -> None:
        self.session.close()
