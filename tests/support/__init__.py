"""What the test suites share: free ports and waiting (``waiting``), a live
``python app.py`` in the embedded default (``server``), users registered over
HTTP (``users``), WebSocket clients that show every frame (``sockets``), raw
HTTP answers (``http``) and the fixtures built on them (``fixtures``, loaded
by tests/conftest.py for every suite).
"""
