"""SQL lives here and only here: each function takes an open Session.

Stores return plain frozen records, read while the session is open, so that
callers never touch an ORM object after its session is gone.
"""
