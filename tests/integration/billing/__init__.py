# A package, so that conftest.py's scope="package" billing fixture really ends with this directory: without
# this file pytest has no Package node here and scopes that fixture to the whole session, so its settler
# (every 0.1 s), housekeeping (0.2 s) and consumer ran beside every later suite on the shared event loop.
