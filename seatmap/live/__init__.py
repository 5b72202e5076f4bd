"""The live seat map: the state of every seat of a screening in Redis, and everyone watching it.

Pure rules: `seats` (seat selection), `protocol` (the wire messages). I/O: `inventory` (the Lua
scripts, one typed method each), `holds` and `blocks` (the REST routes that change seats),
`channels` (pub/sub), `socket` (the WebSocket), `expiry` (restocking lapsed holds).
"""
