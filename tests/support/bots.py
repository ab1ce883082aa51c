"""Light bots in the test's own process, and ending their runs once a test has seen enough.

A bot runs for its `seconds` at most; a test that has seen what it waits for ends the runs with
`finish` instead of sitting out the rest (the report is the same, collected at that moment).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from signaling.bot import Bot, BotOptions, BotReport


def light(seconds: float) -> BotOptions:
    return BotOptions(seconds=seconds, width=320, height=240, decode=False)


def start_bots(links: list[str], seconds: float) -> tuple[list[Bot], list[asyncio.Task[BotReport]]]:
    """Light bots on `links`, running: the bots (to watch) and their tasks (for the reports)."""
    bots = [Bot(link, light(seconds)) for link in links]
    return bots, [asyncio.create_task(bot.run()) for bot in bots]


def seeing_each_other(bots: list[Bot]) -> Callable[[], Awaitable[bool]]:
    """Every bot has received video from every other one (as the participants would see it)."""

    async def condition() -> bool:
        return all(len(bot.video_from()) >= len(bots) - 1 for bot in bots)

    return condition


def flowing(bots: list[Bot], before: list[dict[str, int]]) -> Callable[[], Awaitable[bool]]:
    """Every bot has received more video from every other one since `before` (a list of
    `video_frames()`, one per bot)."""

    async def condition() -> bool:
        for bot, then in zip(bots, before, strict=True):
            now = bot.video_frames()
            others = [p for p in now if p != bot.report.participant]
            if len(others) < len(bots) - 1 or any(now[p] <= then.get(p, 0) for p in others):
                return False
        return True

    return condition


def media_back(bots: list[Bot]) -> Callable[[], Awaitable[bool]]:
    """Every bot has lost its socket at least once, and after each loss has video again from
    everyone it had video from before (its report's `media_back_seconds` would be set)."""

    def back(bot: Bot) -> bool:
        peer = bot._peer
        if peer is not None:
            bot._credit_recoveries(peer)
        return bool(bot._recoveries) and all(
            r.owed and r.owed <= r.back.keys() for r in bot._recoveries
        )

    async def condition() -> bool:
        return all(back(bot) for bot in bots)

    return condition


async def finish(tasks: list[asyncio.Task[BotReport]], bots: list[Bot]) -> list[BotReport]:
    """End the runs still going (as if their `seconds` were over, without the goodbye) and
    return every bot's report; a run that failed raises its error here."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    return [bot.report for bot in bots]
