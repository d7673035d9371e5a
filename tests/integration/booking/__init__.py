# A package, so that conftest.py's scope="package" fixtures (the service and what it runs in the
# background) end with this directory instead of running beside every later suite until the session ends.
