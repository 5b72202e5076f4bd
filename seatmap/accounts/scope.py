"""The organizer's scope: which cinemas a caller may manage.

An organizer (seed 004's role) is given one or more cinemas (venues) by an admin and manages
their halls, screenings, blocks, cancellations, bookings and reports, and nothing elsewhere.
Every other role is unscoped: an admin manages every cinema, staff work at every cinema's
counter and door, a customer manages none. The organizer's cinemas travel in its access token
(`Principal.cinemas`); changing them revokes the user's access tokens (`auth.revoke_user`), so
the next refresh carries the new set and no request needs a database read for the scope.

How a route applies it, in this order, so a caller without the role learns nothing first:

1. `require_scoped(request, role)`: 401 without a token, 403 for a role below `role`, except
   that an organizer passes a route of any role up to admin, to be checked against the cinema;
2. find the cinema of what the route touches (`screening_cinema`, `auditorium_cinema`, or the
   route's own lookup), 404 as usual when there is none;
3. `check_cinema(principal, cinema_id)`: 403 `forbidden` (`OutsideScope`, with `cinema_id`)
   for an organizer outside its cinemas.

`require_cinema` is 1 and 3 at once, for a route whose cinema is in the request itself; lists
filter by `visible_cinemas` (None: every cinema). The role matrix in tests/test_roles.py holds
every admin route of the app to its declared rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.requests import HTTPConnection

from seatmap.accounts.auth import Principal, Role, authenticate
from seatmap.db import AnyConnection
from seatmap.errors import Forbidden, OutsideScope, Unauthorized

CINEMAS_OF: Final = "SELECT cinema_id FROM organizer_cinemas WHERE user_id = $1 ORDER BY cinema_id"

# The enabled organizers of a cinema: who its alerts go to.
ORGANIZERS_OF: Final = """
SELECT u.id FROM organizer_cinemas oc JOIN users u ON u.id = oc.user_id
WHERE oc.cinema_id = $1 AND u.role = 'organizer' AND u.disabled_at IS NULL
ORDER BY u.id
"""

SET_CINEMAS: Final = """
WITH wanted AS (SELECT DISTINCT unnest($2::bigint[]) AS cinema_id),
gone AS (
    DELETE FROM organizer_cinemas oc WHERE oc.user_id = $1
    AND oc.cinema_id NOT IN (SELECT cinema_id FROM wanted)
)
INSERT INTO organizer_cinemas (user_id, cinema_id)
SELECT $1, cinema_id FROM wanted
ON CONFLICT DO NOTHING
"""

MISSING_CINEMAS: Final = """
SELECT array_agg(w.id ORDER BY w.id) FROM unnest($1::bigint[]) AS w(id)
WHERE NOT EXISTS (SELECT 1 FROM cinemas c WHERE c.id = w.id)
"""

SCREENING_CINEMA: Final = """
SELECT a.cinema_id FROM screenings s JOIN auditoriums a ON a.id = s.auditorium_id WHERE s.id = $1
"""

AUDITORIUM_CINEMA: Final = "SELECT cinema_id FROM auditoriums WHERE id = $1"


def visible_cinemas(principal: Principal) -> frozenset[int] | None:
    """The cinemas whose data the caller may see and manage: None means every cinema (staff and
    admins), an organizer's own set otherwise, and none at all for a customer."""
    if principal.role == "organizer":
        return principal.cinemas
    return None if principal.has_role("staff") else frozenset()


def may_manage(principal: Principal, cinema_id: int) -> bool:
    visible = visible_cinemas(principal)
    return visible is None or cinema_id in visible


async def require_scoped(conn: HTTPConnection, role: Role = "admin") -> Principal:
    """`auth.require`, except that an organizer passes whatever `role` says, for the route to
    check the cinema next (`check_cinema`): 401 without a token, 403 for too small a role."""
    principal = await authenticate(conn)
    if principal is None:
        raise Unauthorized()
    if principal.role != "organizer" and not principal.has_role(role):
        raise Forbidden(f"This needs the {role} role.")
    return principal


def check_cinema(principal: Principal, cinema_id: int) -> Principal:
    """403 for an organizer outside its cinemas; everyone past `require_scoped` else passes."""
    if not may_manage(principal, cinema_id):
        raise OutsideScope(cinema_id=cinema_id)
    return principal


async def require_cinema(conn: HTTPConnection, cinema_id: int, role: Role = "admin") -> Principal:
    """The role check and the scope check at once, for a route whose cinema the request names."""
    return check_cinema(await require_scoped(conn, role), cinema_id)


def filter_ids(principal: Principal) -> list[int] | None:
    """`visible_cinemas` as a SQL parameter: `($n::bigint[] IS NULL OR cinema_id = ANY($n))`."""
    visible = visible_cinemas(principal)
    return None if visible is None else sorted(visible)


async def screening_cinema(conn: AnyConnection, screening_id: int) -> int | None:
    """The cinema a screening is in, None when there is no such screening."""
    cinema: int | None = await conn.fetchval(SCREENING_CINEMA, screening_id)
    return cinema


async def auditorium_cinema(conn: AnyConnection, auditorium_id: int) -> int | None:
    cinema: int | None = await conn.fetchval(AUDITORIUM_CINEMA, auditorium_id)
    return cinema


async def check_screening(conn: AnyConnection, principal: Principal, screening_id: int) -> Principal:
    """`check_cinema` for the screening's cinema; reads nothing for an unscoped caller, and lets
    an unknown screening through to the route's own 404."""
    if visible_cinemas(principal) is None:
        return principal
    cinema = await screening_cinema(conn, screening_id)
    return principal if cinema is None else check_cinema(principal, cinema)


async def check_auditorium(conn: AnyConnection, principal: Principal, auditorium_id: int) -> Principal:
    """`check_screening` for an auditorium."""
    if visible_cinemas(principal) is None:
        return principal
    cinema = await auditorium_cinema(conn, auditorium_id)
    return principal if cinema is None else check_cinema(principal, cinema)


async def cinemas_of(conn: AnyConnection, user_id: int) -> list[int]:
    """The cinemas assigned to the user (kept even while the user is not an organizer)."""
    return [row["cinema_id"] for row in await conn.fetch(CINEMAS_OF, user_id)]


async def organizers_of(conn: AnyConnection, cinema_id: int) -> list[int]:
    """The ids of the enabled organizers of a cinema, e.g. to notify them."""
    return [row["id"] for row in await conn.fetch(ORGANIZERS_OF, cinema_id)]


async def missing_cinemas(conn: AnyConnection, cinema_ids: Iterable[int]) -> list[int]:
    """Those of `cinema_ids` that are no cinema."""
    missing: list[int] | None = await conn.fetchval(MISSING_CINEMAS, list(cinema_ids))
    return missing or []


async def set_cinemas(conn: AnyConnection, user_id: int, cinema_ids: Iterable[int]) -> None:
    """Make the user's assignment exactly `cinema_ids` (existing cinemas: check before)."""
    await conn.execute(SET_CINEMAS, user_id, list(cinema_ids))
