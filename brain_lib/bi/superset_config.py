"""Superset's configuration for ``brain bi`` (loaded by Superset in its own virtual
environment through SUPERSET_CONFIG_PATH; it imports nothing of Brain's).

Everything comes from the environment ``brain bi`` starts Superset with:
BRAIN_BI_STATE (the folder of Superset's own metadata, SQLite) and SUPERSET_SECRET_KEY
(from the environment, or generated into that folder; never committed or printed).
"""

import os

_state = os.environ["BRAIN_BI_STATE"]

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(_state, "superset.db")
# one person on this machine: no Celery, no Redis, no thumbnails, no telemetry
FEATURE_FLAGS = {"ALERT_REPORTS": False, "THUMBNAILS": False}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
RESULTS_BACKEND = None
TALISMAN_ENABLED = False
WTF_CSRF_ENABLED = True
SHOW_STACKTRACE = False
ROW_LIMIT = 10000
SUPERSET_WEBSERVER_TIMEOUT = 120
SCARF_ANALYTICS = False
LOG_LEVEL = "WARNING"
