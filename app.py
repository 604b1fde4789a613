"""Entry point: ``python app.py --host H --port P`` or ``gunicorn -k gevent app:app``."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

from imchat.factory import create_app  # noqa: E402
from imchat.serve import prepare, serve  # noqa: E402

app = create_app()
prepare(app)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the imchat server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    serve(app, args.host, args.port)
