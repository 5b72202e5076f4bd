"""The catalog: what can be seen where and when, as one route list for `app.py` to mount.

Each concept owns its module, its data and its routes: `cinemas` (cinemas and their
auditoriums, with the seat layout from `layouts`), `movies`, and `screenings` (with their
prices, and `screening_detail` for every module that shows one screening).
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from seatmap import cinemas, movies, screenings

routes: list[BaseRoute] = [*cinemas.routes, *movies.routes, *screenings.routes]
