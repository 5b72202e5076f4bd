"""Sales: turning held seats into paid tickets, and money back when it has to go back.

`orders` (checkout), `gateway` (the payment provider's contract and webhook signing),
`payments`, `settlement` (a paid order shown sold on the live map), `tickets` (codes, QR, the
door), `boxoffice`, `refunds`, `refund_admin`, `cancellations` and `notifications`.
"""
