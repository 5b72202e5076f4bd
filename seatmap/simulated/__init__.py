"""The simulated payment provider: a stand-in for a real gateway, reached only through
`sales.gateway`'s contract; its webhooks leave through an outbox in PostgreSQL (`outbox`)."""
