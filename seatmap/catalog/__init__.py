"""The catalog: what can be seen where and when.

Each concept owns its module, its data and its routes: `cinemas`, their `auditoriums` (with
the seat layout from `layouts`), `movies`, `screenings` (the public reads, and
`screening_detail` for every module that shows one screening) and `scheduling` (the admin
writes of screenings and their rules: no overlap, a price per category).
"""
