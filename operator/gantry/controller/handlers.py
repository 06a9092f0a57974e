"""Registers every reconciler's kopf handlers by importing their modules.

A reconciler whose module is absent is skipped with a log line; one that exists but
fails to import stops startup, so a broken operator never runs half its handlers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

log = logging.getLogger(__name__)

HANDLER_MODULES = (
    "gantry.controller.settings",
    "gantry.controller.connection",
    "gantry.trainingjob.handlers",
    "gantry.inferenceservice.handlers",
    "gantry.autoscaler.handlers",
)


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is absent
        return False


def load_handlers(modules: tuple[str, ...] = HANDLER_MODULES) -> list[str]:
    """Import each handler module that exists; the names of those loaded."""
    loaded = []
    for name in modules:
        if not _exists(name):
            log.info("handler module %s is not present: skipped", name)
            continue
        importlib.import_module(name)
        log.info("handler module %s loaded", name)
        loaded.append(name)
    return loaded
