"""ApptRemind auth-service.

Users, password log-in, JWT sessions (JWKS for the edge), organisation membership and staff invitations.
"""
