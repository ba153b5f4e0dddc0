"""``async with`` for the objects that own connections or a server: the webhook sender, the
Intuned client and the fake Intuned's server. Leaving the block always closes (``aclose``)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncClosing:
    """Mixin: ``async with obj`` answers ``obj`` and awaits ``obj.aclose()`` however the block
    ends. A class that must open something first overrides ``__aenter__``."""

    async def aclose(self) -> None:
        """Release what the object holds; every subclass says what that is."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
