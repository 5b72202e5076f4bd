"""What admins do to accounts: create staff and organizers, find, view, change roles, disable.

Every change that makes a user's tokens say something untrue revokes them: a new role or a
disabled account ends every login (refresh tokens, in the transaction of the change) and
refuses every access token on every web process before the answer (`auth.revoke_user`); new
cinemas of an organizer revoke only the access tokens, so its browser's silent refresh carries
the new scope. Disabling also releases the account's live holds (their seats are for sale again
at once), and a socket that authenticated as the user acts as them no more (live/socket.py
checks the token at each command). An admin cannot disable or demote themselves: the last admin
would lock everyone out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from asyncpg import Record
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seatmap.accounts import scope, sessions
from seatmap.accounts.auth import ROLES, Role, require, revoke_user
from seatmap.accounts.users import USER_COLUMNS, Name, NewEmail, NewPassword, User, create_user
from seatmap.api import (
    Id,
    Page,
    Param,
    cursor_id,
    documented,
    encode_cursor,
    enum_param,
    int_param,
    path_int,
    query_int,
    read_body,
    respond,
)
from seatmap.db import AnyConnection
from seatmap.errors import Conflict, InvalidInput, NotFound
from seatmap.runtime import Runtime, runtime

CinemaIds = Annotated[list[Id], Meta(max_length=500)]


class Account(User, kw_only=True):
    """An account as the back office sees it."""

    disabled: bool
    # The organizer's cinemas (kept, and shown, while the user has another role).
    cinema_ids: list[int]
    created_at: datetime


class AccountPage(Page, kw_only=True):
    items: list[Account]


class NewUser(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An account made by an admin: box-office or door staff, an organizer, another admin."""

    email: NewEmail
    password: NewPassword
    name: Name
    role: Role = "staff"
    cinema_ids: CinemaIds = msgspec.field(default_factory=list)


class AccountChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Any of the three; what is left out stays as it is."""

    role: Role | None = None
    disabled: bool | None = None
    cinema_ids: CinemaIds | None = None


ACCOUNT_COLUMNS: Final = f"""
{USER_COLUMNS}, disabled_at IS NOT NULL AS disabled, created_at,
ARRAY(SELECT cinema_id FROM organizer_cinemas oc WHERE oc.user_id = users.id ORDER BY cinema_id)
    AS cinema_ids
"""

ACCOUNT_BY_ID: Final = f"SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = $1"

LOCK_ACCOUNT: Final = "SELECT role, disabled_at IS NOT NULL AS disabled FROM users WHERE id = $1 FOR UPDATE"

SET_ROLE: Final = "UPDATE users SET role = $2 WHERE id = $1"

SET_DISABLED: Final = """
UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE id = $1
"""

# `q` matches a part of the email or the name, in any case (a sequential scan: the accounts of a
# cinema chain are thousands, not millions); `%` and `_` in it are literal.
LIST_ACCOUNTS: Final = f"""
SELECT {ACCOUNT_COLUMNS} FROM users
WHERE ($1::text IS NULL OR role = $1)
  AND ($2::text IS NULL OR strpos(lower(email), lower($2)) > 0 OR strpos(lower(name), lower($2)) > 0)
  AND ($3::boolean IS NULL OR (disabled_at IS NOT NULL) = $3)
  AND id > $4
ORDER BY id
LIMIT $5
"""


def _account(row: Record) -> Account:
    return Account(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        email_verified=row["email_verified"],
        disabled=row["disabled"],
        cinema_ids=list(row["cinema_ids"]),
        created_at=row["created_at"],
    )


async def _fetch(conn: AnyConnection, user_id: int) -> Account:
    row = await conn.fetchrow(ACCOUNT_BY_ID, user_id)
    if row is None:
        raise NotFound("No such user.")
    return _account(row)


async def _check_cinemas(conn: AnyConnection, cinema_ids: list[int]) -> None:
    missing = await scope.missing_cinemas(conn, cinema_ids)
    if missing:
        raise InvalidInput(
            f"No such cinema: {', '.join(map(str, missing))}.", path="$.cinema_ids", cinema_ids=missing
        )


@documented(
    "Create an account of any role (staff, organizers with their cinemas, admins)",
    body=NewUser,
    responses={201: Account, 409: None},
    auth="admin",
    tags=("admin",),
)
async def admin_create_user(request: Request) -> Response:
    """The account is created verified: the admin vouches for the address."""
    rt = runtime(request)
    await require(request, "admin")
    body = await read_body(request, NewUser)
    async with rt.pool.acquire() as conn, conn.transaction():
        await _check_cinemas(conn, body.cinema_ids)
        user_id = await create_user(
            conn, email=body.email, password=body.password, name=body.name, role=body.role, verified=True
        )
        await scope.set_cinemas(conn, user_id, body.cinema_ids)
        account = await _fetch(conn, user_id)
    return respond(account, 201)


@documented(
    "Find accounts, oldest first: by part of the email or name, role, disabled",
    responses={200: AccountPage},
    query=(
        Param(name="q", schema={"type": "string", "maxLength": 254}),
        enum_param("role", ROLES),
        Param(name="disabled", schema={"type": "boolean"}),
        "cursor",
        int_param("limit", 1, 200),
    ),
    auth="admin",
    tags=("admin",),
)
async def admin_list_users(request: Request) -> Response:
    rt = runtime(request)
    await require(request, "admin")
    params = request.query_params
    role = params.get("role") or None
    if role is not None and role not in ROLES:
        raise InvalidInput(f"The role must be one of {', '.join(ROLES)}.", path="$.role")
    q = params.get("q", "").strip() or None
    if q is not None and len(q) > 254:
        raise InvalidInput("Search for at most 254 characters.", path="$.q")
    raw_disabled = params.get("disabled") or None
    if raw_disabled not in (None, "true", "false"):
        raise InvalidInput("`disabled` is true or false.", path="$.disabled")
    disabled = None if raw_disabled is None else raw_disabled == "true"
    limit = query_int(request, "limit", 50, minimum=1, maximum=200)
    after = cursor_id(request)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(LIST_ACCOUNTS, role, q, disabled, after, limit + 1)
    accounts = [_account(row) for row in rows[:limit]]
    next_cursor = encode_cursor(accounts[-1].id) if len(rows) > limit else None
    return respond(AccountPage(items=accounts, next_cursor=next_cursor))


@documented("One account", responses={200: Account, 404: None}, auth="admin", tags=("admin",))
async def admin_get_user(request: Request) -> Response:
    rt = runtime(request)
    await require(request, "admin")
    user_id = path_int(request, "id")
    async with rt.pool.acquire() as conn:
        account = await _fetch(conn, user_id)
    return respond(account)


@documented(
    "Change an account's role, disable or enable it, or set an organizer's cinemas",
    body=AccountChange,
    responses={200: Account, 404: None, 409: None},
    auth="admin",
    tags=("admin",),
)
async def admin_change_user(request: Request) -> Response:
    """A new role or a disabled account: every token the user holds is refused with 401 on every
    process from the answer on, and they log in again (a disabled one cannot); a disabled
    account's live holds are released. New cinemas reach the organizer with its next refresh."""
    rt = runtime(request)
    admin = await require(request, "admin")
    user_id = path_int(request, "id")
    body = await read_body(request, AccountChange)
    if user_id == admin.user_id and (body.disabled or (body.role is not None and body.role != "admin")):
        raise Conflict("You cannot disable or demote your own account.")
    account = await change_account(rt, user_id, body)
    return respond(account)


async def change_account(rt: Runtime, user_id: int, change: AccountChange) -> Account:
    """Apply `change` in one transaction, then revoke what it made untrue (see the module
    docstring): refresh tokens with the change, access tokens after the commit, so a token
    issued meanwhile from the old row is refused as well."""
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_ACCOUNT, user_id)
        if row is None:
            raise NotFound("No such user.")
        role: Role = row["role"]
        new_role = change.role is not None and change.role != role
        disabling = change.disabled is True and not row["disabled"]
        before = await scope.cinemas_of(conn, user_id)
        if change.cinema_ids is not None:
            await _check_cinemas(conn, change.cinema_ids)
            await scope.set_cinemas(conn, user_id, change.cinema_ids)
        if new_role:
            await conn.execute(SET_ROLE, user_id, change.role)
        if change.disabled is not None:
            await conn.execute(SET_DISABLED, user_id, change.disabled)
        if new_role or disabling:
            await sessions.end_all(conn, user_id)
        account = await _fetch(conn, user_id)
    rescoped = account.role == "organizer" and account.cinema_ids != before
    if new_role or disabling or rescoped:
        await revoke_user(rt, user_id)
    if disabling:
        await rt.holds.release_all(user_id)
    return account


async def change_role(rt: Runtime, user_id: int, role: Role) -> Account:
    """Give the user `role` and revoke every token they hold (`change_account`)."""
    return await change_account(rt, user_id, AccountChange(role=role))


routes: list[BaseRoute] = [
    Route("/admin/users", admin_create_user, methods=["POST"]),
    Route("/admin/users", admin_list_users, methods=["GET"]),
    Route("/admin/users/{id:int}", admin_get_user, methods=["GET"]),
    Route("/admin/users/{id:int}", admin_change_user, methods=["PATCH"]),
]
