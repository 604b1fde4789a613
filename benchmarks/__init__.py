"""imchat's benchmark harness: a picows + uvloop load generator, the bare
flask-sock echo ceiling, and scenario runners for the embedded default and the
production process set (``python -m benchmarks run|report``)."""
