"""What `BossSource` and `BossSink` share: `BossVolume`.

One ``BossRemote`` per thread of each process, made lazily and never pickled; the
experiment's metadata, fetched once in the coordinating process and carried to workers with
the pickled object; a timeout on every HTTP request, shortened to what is left of the retry
budget; retries of transient failures within that budget (`RetryPolicy`); and requests kept
under the BOSS's size limit (`_split`).

How long a server that stops answering can hold a run: a request gives up once its budget
(``max_elapsed``) is spent, its last try cut short to fit, so within ``max_elapsed`` plus
the connect timeout. Once one request of a process has given up, the server is taken to be
down for as long again (`_outage`): other requests to it from that process (e.g. for blocks
already handed to the worker, which a stopping run still waits for) make one try, waiting
at most the connect timeout for an answer, and are not retried. A request that the server
answers ends that.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np
import requests

from .._numbers import as_int
from ..errors import ConfigError, DataAccessError
from ..geometry import Box, Triple
from ..tiling import BOSS_CUBOID
from . import _outage
from ._arguments import as_timeout
from ._messages import listing, network_reason
from ._metadata import ChannelInfo, VolumeInfo
from ._retry import RetryPolicy, http_status, is_transient, short_reason
from ._split import MAX_CUTOUT_BYTES, TooLarge, split_box
from .config import BossConfig

if TYPE_CHECKING:
    from intern.remote.boss import BossRemote
    from intern.resource.boss.resource import ChannelResource

__all__ = ["BossVolume", "DEFAULT_TIMEOUT"]

logger = logging.getLogger("ndframework.boss")

T = TypeVar("T")
V = TypeVar("V", bound="BossVolume")

DEFAULT_TIMEOUT = (5.0, 120.0)
"""Seconds to connect, and to wait for the server between bytes of an answer."""

_PLACEHOLDER_TOKEN = "set-after-construction"
_SHORTEST_TRY = 0.01  # seconds: a try's timeouts are never cut below this


class BossVolume:
    """What `BossSource` and `BossSink` share: settings, connection, metadata, requests.

    Constructing one does no I/O. `validate` fetches the experiment's metadata and checks
    the settings against it; the first use of ``bounds`` or ``dtype`` does so too, once.
    """

    def __init__(
        self,
        config: BossConfig,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_request_bytes: int = MAX_CUTOUT_BYTES,
    ) -> None:
        if not isinstance(config, BossConfig):
            raise ConfigError(f"config must be a BossConfig, got {type(config).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy or None, got {retry!r}", retry)
        self._check_config(config)
        self.config = config
        self.timeout = as_timeout(timeout)
        self.retry = retry or RetryPolicy()
        self.max_request_bytes = as_int(max_request_bytes, "max_request_bytes", minimum=1)
        self._info: VolumeInfo | None = None
        self._bounds: Box | None = None
        self._init_process_state()

    def _check_config(self, config: BossConfig) -> None:
        """Refuse settings this kind of volume cannot use (none, here)."""

    def _check_info(self, info: VolumeInfo) -> None:
        """Refuse what the BOSS's metadata rules out for this kind of volume (nothing more
        than `BossConfig.check_against`, here)."""

    def _init_process_state(self) -> None:
        self._local = threading.local()  # one BossRemote per thread
        self._lock = threading.Lock()
        self._resources: dict[str, ChannelResource] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_local", "_lock", "_resources"):  # each process makes its own
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    @classmethod
    def from_settings(cls: type[V], config: BossConfig, **options: Any) -> V:
        """One over ``config`` (no I/O); ``options``: ``timeout``, ``retry`` and
        ``max_request_bytes``, as for the constructor."""
        volume = cls.__new__(cls)
        BossVolume.__init__(volume, config, **options)
        return volume

    # -- what it is ---------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return self.config.channels

    @property
    def bounds(self) -> Box:
        """The region read or written, ZYX: the configured ranges, else the frame's."""
        return self._metadata()[1]

    @property
    def info(self) -> VolumeInfo:
        """What the BOSS says about the experiment and channels (fetched once)."""
        return self._metadata()[0]

    def dtype(self, channel: str) -> np.dtype:
        self.check_channels([channel])  # type: ignore[attr-defined]
        return np.dtype(self.info.channels[channel].datatype)

    @property
    def chunk_shape(self) -> Triple:
        """The BOSS storage cuboid, (16, 512, 512) in z, y, x."""
        return BOSS_CUBOID

    @property
    def chunk_origin(self) -> Triple:
        """The BOSS cuboid grid starts at 0 whatever the bounds: cuboid (i, j, k) holds
        x from 512 i, y from 512 j, z from 16 k (spdb's cube keys)."""
        return (0, 0, 0)

    def describe(self) -> str:
        return f"{type(self).__name__}({', '.join(self._details())})"

    def _details(self) -> list[str]:
        """What `describe` says, in parts (never the token)."""
        c = self.config
        return [
            c.url, f"{c.collection}/{c.experiment}", f"channels {', '.join(c.channels)}",
            f"resolution {c.resolution}",
        ]

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    # -- metadata -----------------------------------------------------------------------

    def validate(self: V) -> V:
        """Fetch the metadata and check the settings against it; returns self.

        Raises
        ------
        ConfigError
            If the token is refused ("authentication failed"), the host cannot be reached
            within the timeout, or the collection, experiment, a channel, the resolution or a
            range does not exist; `ChannelError` for a channel, listing the valid ones.
        DataAccessError
            If the server keeps failing (HTTP 5xx) after the retries.
        """
        self._metadata()
        return self

    def _metadata(self) -> tuple[VolumeInfo, Box]:
        if self._info is not None and self._bounds is not None:
            return self._info, self._bounds
        with self._lock:
            if self._info is None or self._bounds is None:
                info = self._fetch_info()
                self._bounds = self.config.check_against(info)
                self._check_info(info)
                self._info = info
            return self._info, self._bounds

    def _fetch_info(self) -> VolumeInfo:
        c = self.config
        remote = self._remote()
        experiment = self._ask(lambda: remote.get_experiment(c.collection, c.experiment))
        frame = self._ask(lambda: remote.get_coordinate_frame(experiment.coord_frame))
        names = tuple(self._ask(lambda: remote.list_channels(c.collection, c.experiment)))
        channels = {}
        for name in c.channels:
            if name in names:
                channels[name] = self._channel_info(remote, name)
        return VolumeInfo(
            collection=c.collection,
            experiment=c.experiment,
            coord_frame=experiment.coord_frame,
            frame=Box(
                (frame.z_start, frame.y_start, frame.x_start),
                (frame.z_stop, frame.y_stop, frame.x_stop),
            ),
            hierarchy_levels=int(experiment.num_hierarchy_levels),
            hierarchy_method=str(experiment.hierarchy_method),
            time_samples=int(experiment.num_time_samples),
            channel_names=names,
            channels=channels,
        )

    def _channel_info(self, remote: BossRemote, name: str) -> ChannelInfo:
        c = self.config
        try:
            resource = self._ask(lambda: remote.get_channel(name, c.collection, c.experiment))
        except ConfigError:  # a ValueError too, but already about the settings
            raise
        except ValueError as error:  # intern refuses a datatype it does not know
            raise ConfigError(
                f"{c.where('channels')}: channel {name!r} of {c.collection}/{c.experiment} has "
                f"a datatype intern cannot read ({error}); supported datatypes: uint8, uint16, "
                f"uint64",
                name,
            ) from None
        return ChannelInfo(
            name=name,
            datatype=resource.datatype,
            type=resource.type,
            base_resolution=int(resource.base_resolution),
            default_time_sample=int(resource.default_time_sample),
        )

    def _ask(self, call: Callable[[], T]) -> T:
        """A metadata request, with errors turned into messages about the settings.

        HTTP 5xx and 429 are retried; a refused connection or a timeout is not, so that a
        wrong host is reported within one timeout.
        """
        c = self.config
        try:
            return self._ask_plainly(call)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise ConfigError(
                f"{c.where('host')} = {c.host!r}: cannot reach the BOSS at {c.url} within "
                f"the timeout of {self.timeout[0]:g} s to connect and "
                f"{min(self.timeout[1], self.retry.max_elapsed):g} s to answer "
                f"({network_reason(error)}); check the host and the protocol",
                c.host,
            ) from None
        except requests.HTTPError as error:
            raise self._settings_error(error) from None
        except json.JSONDecodeError as error:  # requests' own is one too
            raise self._not_a_boss(f"answered a metadata request with something other than "
                                   f"JSON ({error})") from None

    def _ask_plainly(self, call: Callable[[], T]) -> T:
        """A metadata request, HTTP 5xx and 429 retried within the budget; errors as they
        come."""
        started = time.monotonic()
        result = self.retry.call(
            self._timed(call, started),
            what=f"a metadata request to {self.config.url}",
            transient=lambda e: is_transient(e) and http_status(e) is not None,
            started=started,
        )
        _outage.answered(self.config.url)
        return result

    def _settings_error(self, error: requests.HTTPError) -> Exception:
        c = self.config
        status = http_status(error)
        if status == 401:
            return ConfigError(
                f"{c.where('token')}: authentication failed (HTTP 401): the BOSS at {c.url} "
                f"refused the token from {c.token_from}"
            )
        if status == 403:
            return ConfigError(
                f"{c.where('token')}: permission denied (HTTP 403): the token from "
                f"{c.token_from} may not read {c.collection}/{c.experiment} at {c.url}"
            )
        if status == 404:
            return self._not_found()
        if status is not None and (status >= 500 or status == 429):
            return DataAccessError(
                f"the BOSS at {c.url} kept failing while checking {c.collection}/"
                f"{c.experiment} ({getattr(error, 'ndf_attempts', 1)} attempts): "
                f"{short_reason(error)}"
            )
        return ConfigError(
            f"the BOSS at {c.url} refused a request about {c.collection}/{c.experiment}: "
            f"{short_reason(error)}"
        )

    def _not_found(self) -> ConfigError:
        """Which of collection and experiment does not exist, and what does; or that the
        host is no BOSS at all.

        The listings are asked for plainly: a 404 to them must not come back here (a host
        answering 404 to everything once recursed until Python's stack ran out).
        """
        c = self.config
        remote = self._remote()
        experiments: list[str] = []
        try:
            collections = self._ask_plainly(remote.list_collections)
        except requests.HTTPError as error:
            if http_status(error) == 404:  # every BOSS lists collections (GET /v1/collection/)
                return self._not_a_boss("answered HTTP 404 to listing collections, which "
                                        "every BOSS API serves")
            collections = None
        except json.JSONDecodeError:
            return self._not_a_boss("answered listing collections with something other than "
                                    "JSON")
        except (requests.RequestException, ValueError):
            collections = None
        try:
            if collections is not None and c.collection in collections:
                experiments = self._ask_plainly(lambda: remote.list_experiments(c.collection))
        except (requests.RequestException, ValueError):
            collections = None
        if collections is None:  # cannot list: say what is known
            return ConfigError(
                f"{c.where('collection')} = {c.collection!r}, {c.where('experiment')} = "
                f"{c.experiment!r}: not found at {c.url} (HTTP 404)",
                c.experiment,
            )
        if c.collection not in collections:
            return ConfigError(
                f"{c.where('collection')} = {c.collection!r}: no such collection at {c.url} "
                f"(or not visible with this token); collections: {listing(collections)}",
                c.collection,
            )
        return ConfigError(
            f"{c.where('experiment')} = {c.experiment!r}: collection {c.collection!r} has no "
            f"such experiment (or its coordinate frame is missing); experiments: "
            f"{listing(experiments)}",
            c.experiment,
        )

    def _not_a_boss(self, what_it_did: str) -> ConfigError:
        c = self.config
        return ConfigError(
            f"{c.where('host')} = {c.host!r}: the server at {c.url} does not look like a BOSS "
            f"API: it {what_it_did}; check the host (e.g. 'api.bossdb.io', without a path) "
            f"and the protocol",
            c.host,
        )

    # -- requests -----------------------------------------------------------------------

    def _remote(self) -> BossRemote:
        """This thread's ``BossRemote``, made on first use, every request under a timeout.

        intern sends every request with ``session.send(prepared, **session_send_opts)``;
        adding ``timeout`` to each service's ``session_send_opts`` bounds them all. The
        token goes in through intern's setters, so it is in no config string of intern's.
        """
        remote = getattr(self._local, "remote", None)
        if remote is None:
            from intern.remote.boss import BossRemote

            c = self.config
            remote = BossRemote(
                {"protocol": c.protocol, "host": c.host, "token": _PLACEHOLDER_TOKEN}
            )
            for service in (
                remote.project_service, remote.metadata_service, remote.volume_service
            ):
                service.session_send_opts = {**service.session_send_opts, "timeout": self.timeout}
            token = c.token.reveal()
            remote.token_project = remote.token_metadata = remote.token_volume = token
            self._local.remote = remote
            logger.debug("opened a BOSS connection to %s in process %d", c.url, os.getpid())
        return remote

    def _resource(self, channel: str) -> ChannelResource:
        """The channel as intern wants it, built from the carried metadata: no request."""
        resource = self._resources.get(channel)
        if resource is None:
            from intern.resource.boss.resource import ChannelResource

            info = self.info.channels[channel]
            resource = ChannelResource(
                channel, self.config.collection, self.config.experiment, type=info.type,
                datatype=info.datatype, base_resolution=info.base_resolution,
                default_time_sample=info.default_time_sample,
            )
            self._resources[channel] = resource
        return resource

    def _pieces(self, box: Box, channel: str) -> list[Box]:
        t_range = self.config.t_range
        times = 1 if t_range is None else t_range[1] - t_range[0]
        return split_box(box, self.dtype(channel).itemsize * times, self.max_request_bytes)

    def _timed(
        self, call: Callable[[], T], started: float, longest_wait: float | None = None
    ) -> Callable[[], T]:
        """``call``, made under this thread's timeouts cut to what is left of the retry
        budget that began at ``started`` (and the wait for an answer to ``longest_wait``).

        intern sends with ``session.send(prepared, **session_send_opts)``, and each thread
        has its own ``BossRemote``, so setting the timeout just before the call is safe.
        """

        def attempt() -> T:
            left = started + self.retry.max_elapsed - time.monotonic()
            connect, read = self.timeout
            if longest_wait is not None:
                read = min(read, longest_wait)
            timeout = (
                max(_SHORTEST_TRY, min(connect, left)), max(_SHORTEST_TRY, min(read, left))
            )
            remote = self._remote()
            for service in (
                remote.project_service, remote.metadata_service, remote.volume_service
            ):
                service.session_send_opts = {**service.session_send_opts, "timeout": timeout}
            return call()

        return attempt

    def _call(self, call: Callable[[], T], what: str) -> T:
        """A cutout request: transient failures retried within the budget (one try only
        while this process takes the server to be down), others a `DataAccessError`."""
        url = self.config.url
        started = time.monotonic()
        outage = _outage.current(url)
        policy = self.retry if outage is None else attrs.evolve(self.retry, max_attempts=1)
        longest_wait = None if outage is None else self.timeout[0]
        try:
            result = policy.call(
                self._timed(call, started, longest_wait), what=what, started=started
            )
        except Exception as error:
            if http_status(error) == 413:
                raise TooLarge(what) from error
            gave_up = getattr(error, "ndf_gave_up", None)
            attempts = getattr(error, "ndf_attempts", 1)
            elapsed = getattr(error, "ndf_elapsed", time.monotonic() - started)
            if outage is not None and gave_up is not None:
                gave_up = (
                    f"not retried: another request to this BOSS gave up "
                    f"{started - outage.at:.1f} s earlier, after failing for "
                    f"{outage.spent:.1f} s"
                )
            elif gave_up is not None:
                _outage.given_up(url, elapsed, self.retry.max_elapsed)
            detail = "" if gave_up is None else f" ({gave_up})"
            raise DataAccessError(
                f"{what} failed after {attempts} attempt(s) in {elapsed:.1f} s{detail}: "
                f"{self._reason(error)}"
            ) from error
        _outage.answered(url)
        return result

    def _reason(self, error: BaseException) -> str:
        status = http_status(error)
        if status == 401:
            return (
                f"authentication failed (HTTP 401): the token from {self.config.token_from} "
                f"was refused"
            )
        if isinstance(error, (requests.ConnectionError, requests.Timeout)):
            return network_reason(error)
        return short_reason(error)

    def _where(self, channel: str, box: Box) -> str:
        c = self.config
        return (
            f"channel {channel!r} of {c.collection}/{c.experiment} at {c.url}, box {box} "
            f"(z, y, x)"
        )

    @staticmethod
    def _ranges(box: Box) -> tuple[list[int], list[int], list[int]]:
        """intern's (x_range, y_range, z_range) of a ZYX box."""
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        return [x0, x1], [y0, y1], [z0, z1]
