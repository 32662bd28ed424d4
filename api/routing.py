"""The route class every router uses: JSON numbers read the way JSON Schema means them.

JSON Schema calls ``150.0`` an integer; Pydantic's strict mode (which we need, so that
``"150"`` or ``false`` are not coerced into numbers) would refuse it for an ``int``
field. Reading every integral JSON number as a Python ``int`` reconciles the two:
``int`` fields accept it, and strict ``float`` fields accept ints too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["JSONSchemaRoute", "parse_json"]


def _number(text: str) -> int | float:
    value = float(text)
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def parse_json(text: str | bytes) -> Any:
    """JSON as JSON Schema reads it: integral numbers (``150.0``) become ``int``.

    Examples
    --------
    >>> parse_json('{"k": 150.0, "x": 0.5}')
    {'k': 150, 'x': 0.5}
    """
    return json.loads(text, parse_float=_number)


class _JSONSchemaRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JSONSchemaRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose JSON bodies follow JSON Schema's numbers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_JSONSchemaRequest(request.scope, request.receive))

        return route_handler
