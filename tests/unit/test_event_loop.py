"""`xget` commands run on the event loop Settings.event_loop names."""

from __future__ import annotations

import asyncio
import gc

import pytest

from libs.settings import Settings
from services.cli import run_loop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize("choice,module", [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_commands_run_on_the_configured_loop(choice, module):
    settings = Settings(_env_file=None, event_loop=choice)
    assert run_loop(_loop_module(), settings).split(".")[0] == module


async def _gen0_threshold() -> int:
    return gc.get_threshold()[0]


@pytest.mark.parametrize("setting,expected", [(20_000, 20_000), (0, None)])
def test_commands_run_with_the_configured_gc_threshold(setting, expected):
    """Parsing builds thousands of dicts a page: the young generation is collected every
    `gc_gen0_threshold` allocations instead of Python's 700; 0 leaves Python's own."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        settings = Settings(_env_file=None, gc_gen0_threshold=setting)
        assert run_loop(_gen0_threshold(), settings) == (expected or 700)
    finally:
        gc.set_threshold(*before)
