"""Django settings for the session benchmark (bench.py): SessionMiddleware and the
views in urls.py, no database. The session engine is each backend's, set by bench.py.

Where things are comes from the environment scripts/bench sets: SERVICE_URL (the
session service), AWS_ENDPOINT_URL_DYNAMODB (its DynamoDB Local, which the peers use
too), with placeholder credentials DynamoDB Local accepts.
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
SESSION_ENGINE = "boto3_sessions"  # each backend's own while it runs (bench.py)

# session_service.django (ours). Direct reads (SESSION_SERVICE_SESSIONS_TABLE) are
# set for its direct-read row only (bench.py).
SESSION_SERVICE_URL = os.environ["SERVICE_URL"]
# The service here is a debug build under `cargo lambda watch`, which holds requests
# while it rebuilds: more than the default 5 s per request.
SESSION_SERVICE_TIMEOUT = 30

# The peers' tables, on the service's DynamoDB Local. Both peers read
# DYNAMODB_SESSIONS_TABLE_NAME and key their items by "session_key", as the boto3
# baseline (boto3_sessions.py) does: the three share one table (bench.py makes it).
DYNAMODB_ENDPOINT = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
DYNAMODB_SESSIONS_TABLE_NAME = "django_sessions"
DYNAMODB_SESSIONS_ALWAYS_CONSISTENT = True  # both peers: strongly consistent reads, as ours
# django-dynamodb-sessions-mwas
LOCAL_DYNAMODB_SERVER = DYNAMODB_ENDPOINT
DYNAMODB_SESSIONS_AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "local")
DYNAMODB_SESSIONS_AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "local")
DYNAMODB_SESSIONS_AWS_REGION_NAME = os.environ.get("AWS_REGION", "us-east-1")
# django-dynamodb2-sessions takes its boto 2 connection from DYNAMODB_CONNECTION
# (bench.py makes one for DynamoDB Local). AWS_ACCESS_KEY_ID stays unset here: with it,
# the peer would connect to AWS's own endpoint for the region on every request.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # django-dynamodb2-sessions logs an error on every request when AWS_ACCESS_KEY_ID
    # is not a setting (it is left unset on purpose, above).
    "loggers": {"dynamodb2_sessions": {"level": "CRITICAL"}},
}
