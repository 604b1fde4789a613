"""The Celery application: ``celery -A tasks worker`` / ``beat`` / ``flower``.

Logic lives in imchat.services; tasks are thin wrappers (tasks/jobs.py).
"""

from imchat import logs
from imchat.celery_app import make_celery
from imchat.config import load_settings

settings = load_settings()
logs.configure(settings)
celery = make_celery(settings)
app = celery
