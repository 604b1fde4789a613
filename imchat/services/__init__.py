"""The chat domain's use cases (accounts, groups, messaging).

Services open short database sessions through ``services.db.session()``, call
the stores for SQL, and raise ``imchat.errors.APIError`` for the client.
"""
