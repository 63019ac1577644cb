"""A loop a gateway runs for its whole life: started with the app, cancelled at its cleanup."""

from __future__ import annotations

import abc
import asyncio


class Background(abc.ABC):
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @abc.abstractmethod
    async def _forever(self) -> None: ...
