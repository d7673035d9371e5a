"""ApptRemind scheduler-service.

A generic durable delayed-job engine: at a job's due time it emits the caller's event.
"""
