"""Registers every reconciler's kopf handlers by importing their modules.

Every module is imported unconditionally: one that is missing or fails to import stops
startup with its ImportError, so a broken operator never runs half its handlers.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

HANDLER_MODULES = (
    "gantry.controller.settings",
    "gantry.controller.connection",
    "gantry.controller.watch_cache",
    "gantry.controller.health",
    "gantry.trainingjob.handlers",
    "gantry.inferenceservice.handlers",
    "gantry.autoscaler.handlers",
)


def load_handlers(modules: tuple[str, ...] = HANDLER_MODULES) -> list[str]:
    """Import each handler module (an ImportError when one is absent); their names."""
    for name in modules:
        importlib.import_module(name)
        log.info("handler module %s loaded", name)
    return list(modules)
