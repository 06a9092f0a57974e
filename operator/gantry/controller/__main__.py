"""`python -m gantry.controller`: run the Gantry operator (kopf)."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from urllib.parse import urlparse

import kopf

from gantry.config import ConfigError
from gantry.controller import metrics
from gantry.controller.handlers import load_handlers
from gantry.controller.settings import operator_config, operator_kwargs

log = logging.getLogger("gantry.controller")


def _bind_error(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound here (in use, address not on this host), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def _port_free(host: str, port: int) -> bool:
    return _bind_error(host, port) is None


def _usable_liveness(url: str | None) -> str | None:
    """The liveness URL, or None (with a warning) when it cannot be served here."""
    if not url:
        return None
    parsed = urlparse(url)
    host = parsed.hostname or "0.0.0.0"
    why = _bind_error(host, parsed.port) if parsed.port else None
    if why:
        log.warning(
            "cannot serve liveness on %s:%d (%s): health endpoint disabled", host, parsed.port, why
        )
        return None
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gantry.controller", description=__doc__)
    parser.add_argument(
        "--liveness", default=None, help="health endpoint URL (default: config `liveness`)"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs every handler run per object: keep only what goes wrong.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        config = operator_config()
    except (ConfigError, ValueError) as err:
        log.error("%s", err)
        return 2
    load_handlers()
    port = config.metrics_port
    if port and not _port_free("0.0.0.0", port):
        log.warning("metrics port %d is in use: /metrics disabled", port)
    else:
        metrics.serve(port)
    liveness = args.liveness if args.liveness is not None else config.liveness
    kopf.run(liveness_endpoint=_usable_liveness(liveness), **operator_kwargs(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
