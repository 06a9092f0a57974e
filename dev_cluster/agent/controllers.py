"""A tiny level-triggered controller loop: reconcile on change and on a resync tick."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from .api import APIError
from .informer import Trigger

log = logging.getLogger(__name__)


async def control_loop(
    name: str, trigger: Trigger, reconcile: Callable[[], Awaitable[None]], resync: float = 1.0
) -> None:
    """Call reconcile() after every change notification and at least every `resync` s."""
    while True:
        try:
            await reconcile()
        except asyncio.CancelledError:
            raise
        except (APIError, aiohttp.ClientError, OSError) as exc:
            log.debug("%s: %s", name, exc)
        except Exception:
            log.exception("%s controller failed; retrying", name)
        await trigger.wait(resync)
