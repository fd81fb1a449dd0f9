"""The emulator's command line: ``python -m ndframework.bossemu`` or ``ndframework
boss-emulator``.

The token comes from ``--token`` or the ``NDFRAMEWORK_BOSS_TOKEN`` environment variable and is
never printed: the banner says where it came from, not what it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from .._bossapi import EMULATOR_TOKEN_ENV_VAR, MAX_CUTOUT_BYTES
from ..errors import ConfigError
from .errors import BossError, ErrorCodes
from .faults import Faults
from .paths import ResourcePath
from .quirks import Quirks
from .server import BossEmulator

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a local BOSS API emulator that intern's BossRemote can use."
    )
    parser.add_argument(
        "--address", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        help="TCP port, 0 for any free port (default: %(default)s)",
    )
    parser.add_argument(
        "--token", help=f"API token clients must send (default: ${EMULATOR_TOKEN_ENV_VAR})"
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="keep resources and voxels in DIR, across restarts (default: in memory)",
    )
    parser.add_argument(
        "--exact-ids",
        action="store_true",
        help="answer /v1/ids and /v1/boundingbox from the stored voxels (default: as the "
        "BOSS, whose object index is empty)",
    )
    parser.add_argument(
        "--without-quirk",
        action="append",
        default=[],
        choices=Quirks.names(),
        metavar="NAME",
        help="do not reproduce this oddity of the BOSS (repeatable; default: reproduce them "
        f"all): {', '.join(Quirks.names())}",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="seed collection 'demo', experiment 'synthetic', channels 'em' and 'mask'",
    )
    parser.add_argument(
        "--max-cutout-mib",
        type=float,
        default=MAX_CUTOUT_BYTES / 2**20,
        help="largest cutout, uncompressed, in MiB (default: %(default)s)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of cutout requests that fail"
    )
    faults.add_argument(
        "--error-status", type=int, default=503, help="HTTP status of a failure (default: 503)"
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    faults.add_argument("--seed", type=int, default=0, help="seed of the failure draw (default: 0)")
    faults.add_argument(
        "--error-window",
        type=float,
        default=None,
        help="seconds from the first cutout request during which --error-rate applies "
        "(default: always)",
    )
    faults.add_argument(
        "--frozen",
        action="store_true",
        help="accept connections and never answer, as a hung server does",
    )
    return parser


def _seed_demo(emulator: BossEmulator) -> tuple[int, ...]:
    """Load the demo volume, unless a persistent store holds it already; returns its shape."""
    from ..synthetic import demo_volume

    demo = demo_volume()
    try:
        emulator.resources.get(ResourcePath(collection="demo", experiment="synthetic"))
    except BossError as error:
        if error.code != ErrorCodes.RESOURCE_NOT_FOUND:  # deleted, its names still taken
            raise ConfigError(
                f"--demo: the store {emulator.store} holds a deleted demo/synthetic, whose "
                "names stay taken until purged; use another --store, or an empty one",
                emulator.store,
            ) from None
        emulator.create_volume("demo", "synthetic", demo)
    return demo["em"].shape


def _print_banner(
    emulator: BossEmulator, token_source: str, demo_shape: tuple[int, ...] | None
) -> None:
    # Say where the token comes from, never what it is.
    print(f"BOSS emulator serving at {emulator.url}")
    print(
        f"intern config: protocol = http, host = {emulator.host}, "
        f"token = the value of {token_source}"
    )
    print(f"store: {emulator.store if emulator.store is not None else 'in memory'}")
    off = [name for name in Quirks.names() if name not in emulator.quirks.active]
    print(f"BOSS quirks: all reproduced{'' if not off else ' but ' + ', '.join(off)}")
    if demo_shape is not None:
        print(
            "demo data: collection 'demo', experiment 'synthetic', channels 'em' (uint8) and "
            f"'mask' (uint16), (z, y, x) = {demo_shape}"
        )
    print("Press Ctrl-C to stop.", flush=True)


def main(argv: Sequence[str] | None = None, prog: str = "python -m ndframework.bossemu") -> int:
    """Serve the emulator until interrupted (Ctrl-C); returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    token = args.token or os.environ.get(EMULATOR_TOKEN_ENV_VAR)
    if not token:
        parser.error(
            f"give the API token with --token or the {EMULATOR_TOKEN_ENV_VAR} environment variable"
        )
    try:
        faults = Faults(
            error_rate=args.error_rate,
            status=args.error_status,
            latency=args.latency,
            seed=args.seed,
            error_window=args.error_window,
            frozen=args.frozen,
        )
        emulator = BossEmulator(
            token,
            port=args.port,
            address=args.address,
            max_cutout_bytes=int(args.max_cutout_mib * 2**20),
            faults=faults,
            store=args.store,
            exact_id_index=args.exact_ids,
            quirks=Quirks.without(*args.without_quirk),
        )
    except ValueError as error:  # ConfigError is a ValueError too
        parser.error(str(error))
    demo_shape = None
    if args.demo:
        try:
            demo_shape = _seed_demo(emulator)
        except ConfigError as error:
            parser.error(str(error))
    try:
        emulator.start()
    except OSError as error:
        print(f"error: cannot listen on {args.address}:{args.port}: {error}", file=sys.stderr)
        return 1
    _print_banner(emulator, "--token" if args.token else f"${EMULATOR_TOKEN_ENV_VAR}", demo_shape)
    try:
        while emulator.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0
