"""`xget` commands run on the event loop Settings.event_loop names."""

from __future__ import annotations

import asyncio

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

