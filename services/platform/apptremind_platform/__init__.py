"""The kit every ApptRemind service stands on: server, database, outbox, inbox, events, observability."""
