"""ApptRemind analytics-service: read models and aggregates built from the other services' events."""
