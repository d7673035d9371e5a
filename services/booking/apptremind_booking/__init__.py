"""ApptRemind booking-service.

Availability and the appointment lifecycle; double booking prevented by an exclusion constraint.
"""
