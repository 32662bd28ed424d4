"""Progress bars for long work in the CLI and in notebooks (rich).

Library code reports progress through a plain callback (``on_progress(done, total)``)
so it never prints by itself; :func:`progress_bar` turns such a callback into a rich
bar, and :func:`track` wraps an iterable. Both fall silent when ``enabled`` is false
or the output is not a terminal.

Examples
--------
>>> from privaudit.progress import track
>>> sum(track(range(5), description="adding", enabled=False))
10
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressCallback", "StageCallback", "progress_bar", "stage_progress", "track"]

T = TypeVar("T")
ProgressCallback = Callable[[int, int], None]
"""``callback(done, total)``: how long work reports how far it got."""

StageCallback = Callable[[str, int, "int | None"], None]
"""``callback(stage, done, total)``: work in named stages (``total`` may be ``None``)."""


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


@contextmanager
def progress_bar(
    description: str, *, total: int | None = None, enabled: bool = True
) -> Iterator[ProgressCallback]:
    """Yield a ``callback(done, total)`` that drives a rich progress bar."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda done, total_: None
        return
    with _progress(console) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            bar.update(task, completed=done, total=total_)

        yield update


@contextmanager
def stage_progress(*, enabled: bool = True) -> Iterator[StageCallback]:
    """Yield a ``callback(stage, done, total)`` that shows one rich bar per stage.

    A stage's bar appears at its first report and is completed when the next stage
    starts (a stage may end without a final report).

    Examples
    --------
    >>> with stage_progress(enabled=False) as on_progress:
    ...     on_progress("train", 1, 3)
    """
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda stage, done, total: None
        return
    with _progress(console) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                for task in tasks.values():
                    finished = bar.tasks[task].total
                    if finished is not None:
                        bar.update(task, completed=finished)
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def track(
    items: Iterable[T], *, description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on a terminal."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total=total, enabled=enabled) as update:
        for done, item in enumerate(items, start=1):
            yield item
            update(done, total or done)
