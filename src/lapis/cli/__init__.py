"""The `lapis` command line: a client of the management API over HTTP."""
