"""The downsample service: ``GET``, ``POST`` and ``DELETE /v1/downsample/{coll}/{exp}/{chan}/``,
and the background worker that builds the levels.

On the BOSS, ``POST`` queues a job (``start``, boss django/bossspatialdb/downsample.py: the
channel goes QUEUED with a compare-and-set, 201), a step function takes jobs from the queue
one at a time (IN_PROGRESS), runs boss-tools' downsampling level by level and ends DOWNSAMPLED
or FAILED (boss-tools activities/resolution_hierarchy.py, boss_db.py); ``DELETE`` cancels a
queued or running job (NOT_DOWNSAMPLED, 204; ``Downsample.delete``, boss
django/bossspatialdb/views.py) and levels already written stay. ``GET`` answers the status
and the levels (`ndframework.bossemu.downsample_status.downsample_info`).

Here one daemon thread plays the step function over the cuboid store, with
`ndframework.bossemu.downsample.run_downsample`, once per stored time sample. A job cancelled
while it runs stops at the next cuboid. Jobs left QUEUED or IN_PROGRESS in a persistent store
are queued again when the emulator starts.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from .cuboid_format import CuboidKey, decode_cuboid, encode_cuboid
from .datarequest import Backend, ChannelRequest, channel_request
from .downsample import plan_downsample, run_downsample
from .downsample_status import DownsampleEvent, DownsampleStatus, downsample_info, next_status
from .errors import BossError, ErrorCodes
from .http import Request, Response, logger
from .paths import ResourcePath

__all__ = ["Downsampler", "get_downsample", "start_downsample", "cancel_downsample"]


class _Cancelled(Exception):
    pass


class _Stopping(Exception):
    pass


class Downsampler:
    """One worker thread running queued downsample jobs in order."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._jobs: queue.Queue[ResourcePath | None] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Start the worker and queue again the jobs a previous run left unfinished."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._work, name="boss-downsample", daemon=True)
        self._thread.start()
        resources = self._backend.resources
        for path in resources.channels_in_status(
            DownsampleStatus.QUEUED, DownsampleStatus.IN_PROGRESS
        ):
            channel_id = resources.resolve(path).channel["id"]  # type: ignore[index]
            resources.set_downsample_status(channel_id, DownsampleStatus.QUEUED)
            self.submit(path)

    def stop(self) -> None:
        """Stop the worker at the next cuboid of the job it runs. That job stays IN_PROGRESS
        and the queued ones QUEUED, for the next `start` to take up again."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            self._jobs.put(None)
            thread.join(timeout=30)
            with self._idle:
                while True:  # forget what was queued: start() finds it by its status
                    try:
                        if self._jobs.get_nowait() is not None:
                            self._pending -= 1
                    except queue.Empty:
                        break
                self._idle.notify_all()

    def submit(self, path: ResourcePath) -> None:
        """Queue a job for a channel already set QUEUED."""
        with self._lock:
            self._pending += 1
        self._jobs.put(path)

    def cancel(self, channel_id: int) -> None:
        """Make a running job of this channel stop at its next cuboid."""
        with self._lock:
            self._cancelled.add(channel_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running; whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            path = self._jobs.get()
            if path is None or self._stopping.is_set():
                if path is not None:
                    self._jobs.put(path)  # left for stop() to forget
                return
            try:
                self._run(path)
            except Exception:
                logger.exception("BOSS emulator: downsample of %s failed", path)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _run(self, path: ResourcePath) -> None:
        resources = self._backend.resources
        try:
            channel = ChannelRequest(resources.resolve(path))
        except BossError:
            return  # deleted meanwhile
        channel_id = channel.channel["id"]
        with self._lock:
            self._cancelled.discard(channel_id)
        dequeued = next_status(DownsampleStatus.QUEUED, DownsampleEvent.DEQUEUE).status
        if not resources.set_downsample_status(
            channel_id, dequeued, only_from=(DownsampleStatus.QUEUED,)
        ):
            return  # cancelled while queued
        try:
            self._downsample(channel)
        except _Cancelled:
            return  # the DELETE set NOT_DOWNSAMPLED
        except _Stopping:
            return  # stays IN_PROGRESS until the emulator serves again
        except Exception as error:
            logger.info("BOSS emulator: downsample of %s failed: %s", path, error)
            outcome = next_status(dequeued, DownsampleEvent.FAIL).status
        else:
            outcome = next_status(dequeued, DownsampleEvent.FINISH).status
        resources.set_downsample_status(channel_id, outcome, only_from=(dequeued,))

    def _downsample(self, channel: ChannelRequest) -> None:
        store, key, dtype = self._backend.cuboids, channel.lookup_key, channel.dtype
        channel_id = channel.channel["id"]
        hierarchy = channel.hierarchy
        plan = plan_downsample(hierarchy)
        base = hierarchy.base_resolution
        samples = sorted({k.time_sample for k in store.keys_in(key, base, iso=False)})
        for time_sample in samples:

            def read_cuboid(resolution: int, xyz: tuple, iso: bool) -> np.ndarray | None:
                if channel_id in self._cancelled:
                    raise _Cancelled
                if self._stopping.is_set():
                    raise _Stopping
                data = store.get(CuboidKey.at(key, resolution, xyz[::-1], time_sample, iso))
                return None if data is None else decode_cuboid(data, dtype)

            def write_cuboid(resolution: int, xyz: tuple, iso: bool, array: np.ndarray) -> None:
                cuboid_key = CuboidKey.at(key, resolution, xyz[::-1], time_sample, iso)
                with store.lock(cuboid_key):
                    store.put(cuboid_key, encode_cuboid(np.ascontiguousarray(array, dtype)))

            def list_cuboids(resolution: int, iso: bool) -> list[tuple[int, int, int]]:
                keys = store.keys_in(key, resolution, iso=iso, time_samples=[time_sample])
                return [k.index[::-1] for k in keys]

            run_downsample(
                plan,
                read_cuboid,
                write_cuboid,
                list_cuboids,
                is_annotation=channel.is_annotation,
                dtype=dtype,
            )


# -- the views ---------------------------------------------------------------------------------


def get_downsample(backend: Backend, request: Request) -> Response:
    """``GET``: the channel's status and levels (``Downsample.get``)."""
    iso = (request.query_value("iso") or "").lower() == "true"
    channel = channel_request(backend, request.params)
    try:
        info = downsample_info(channel.hierarchy, channel.channel["downsample_status"], iso)
    except ValueError as error:
        raise BossError(
            ErrorCodes.BOSS_SYSTEM_ERROR,
            f"Error while getting downsampled voxel dimensions: {error}",
        ) from None
    return Response.json(200, info)


def start_downsample(backend: Backend, request: Request) -> Response:
    """``POST``: queue a downsample (``start``, django/bossspatialdb/downsample.py)."""
    channel = channel_request(backend, request.params)
    status = channel.channel["downsample_status"]
    hierarchy = channel.hierarchy
    voxels = 1
    for start, stop in zip(hierarchy.frame_start_xyz, hierarchy.frame_stop_xyz):
        voxels *= stop - start
    outcome = next_status(status, DownsampleEvent.START, is_staff=backend.is_staff,
                          frame_voxels=voxels)
    if outcome.refused:
        raise BossError(outcome.error_code, outcome.message)  # type: ignore[arg-type]
    resources = backend.resources
    queued = resources.set_downsample_status(
        channel.channel["id"],
        outcome.status,
        only_from=tuple(
            s for s in (DownsampleStatus.NOT_DOWNSAMPLED, DownsampleStatus.DOWNSAMPLED,
                        DownsampleStatus.FAILED)
        ),
    )
    if not queued:  # enqueue_job's compare-and-set lost a race
        raise BossError(ErrorCodes.BAD_REQUEST, "Downsample already queued or in progress")
    assert backend.downsampler is not None
    resolved = channel.resolved
    backend.downsampler.submit(
        ResourcePath(
            collection=resolved.collection["name"],
            experiment=resolved.experiment["name"],  # type: ignore[index]
            channel=resolved.channel["name"],  # type: ignore[index]
        )
    )
    return Response(201)


def cancel_downsample(backend: Backend, request: Request) -> Response:
    """``DELETE``: cancel a queued or running downsample (``Downsample.delete``)."""
    channel = channel_request(backend, request.params)
    status = channel.channel["downsample_status"]
    outcome = next_status(status, DownsampleEvent.CANCEL)
    if outcome.refused:
        raise BossError(outcome.error_code, outcome.message)  # type: ignore[arg-type]
    channel_id = channel.channel["id"]
    assert backend.downsampler is not None
    backend.downsampler.cancel(channel_id)
    backend.resources.set_downsample_status(channel_id, outcome.status)
    return Response(204)
