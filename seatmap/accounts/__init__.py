"""Accounts: who someone is and what they may do.

`users` (register, verify, log in, the admin's user list), `auth` (access tokens, roles and the
`require` guard every route uses), `sessions` (rotating refresh tokens), `verification` (email
codes), `passwords` (scrypt) and `ratelimit` (login limits, one Lua step).
"""
