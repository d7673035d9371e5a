"""ApptRemind's Faust stream processors: the reminder pipeline's agents (see streams/README.md)."""
