"""ApptRemind business-service.

Businesses, staff, working hours, date overrides, services catalogue and reminder policy defaults.
"""
