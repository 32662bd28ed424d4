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
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressCallback", "progress_bar", "track"]

T = TypeVar("T")
ProgressCallback = Callable[[int, int], None]
"""``callback(done, total)``: how long work reports how far it got."""


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
