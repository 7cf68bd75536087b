"""Django's own session tests, run against ``session_service.django.SessionStore``.

Downloads the source distribution of the installed Django from PyPI (``pip
download --no-binary :all:``; cached in ``$DJANGO_SUITE_CACHE``, by default the
repository's ``.local/django-suite``, which git ignores), extracts
``tests/sessions_tests/`` and runs its ``SessionTestsMixin`` and
``SessionMiddlewareTests`` with ``SESSION_ENGINE = "session_service.django"``
against the service at ``$SESSION_SERVICE_URL``. A few tests are skipped, each
with its reason (``SKIPS`` in service_tests.py). Exits non-zero on any failure
or error, or when the service is not there.

    SESSION_SERVICE_URL=http://127.0.0.1:9000/lambda-url/api python tests/django_suite/run.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]


def fetch_sessions_tests(version: str) -> Path:
    """The directory holding Django ``version``'s ``sessions_tests`` package (downloaded once)."""
    cache = Path(os.environ.get("DJANGO_SUITE_CACHE") or REPO / ".local" / "django-suite")
    target = cache / f"django-{version}-tests"
    if (target / "sessions_tests" / "tests.py").is_file():
        return target
    downloads = cache / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / f"django-{version}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-binary", ":all:", "--no-deps", f"django=={version}", "-d", str(downloads)],
            check=True,
        )
    prefix = f"django-{version}/tests/sessions_tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        if not members:
            raise SystemExit(f"{archive} has no {prefix}")
        staging = cache / f"django-{version}-tests.partial" / "sessions_tests"
        staging.mkdir(parents=True, exist_ok=True)
        for member in members:
            data = tar.extractfile(member)
            assert data is not None
            (staging / member.name[len(prefix) :]).write_bytes(data.read())
    staging.parent.rename(target)
    return target


def main() -> int:
    url = os.environ.get("SESSION_SERVICE_URL", "").rstrip("/")
    if not url:
        print("SESSION_SERVICE_URL is not set: Django's session tests need a running session service", file=sys.stderr)
        return 3

    import django
    import httpx

    try:
        httpx.get(f"{url}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as error:
        print(f"the session service at {url} does not answer: {error}", file=sys.stderr)
        return 3

    sys.path[:0] = [str(fetch_sessions_tests(django.__version__)), str(HERE)]

    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-suite-not-secret",
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.sessions",
            "sessions_tests",
        ],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE="session_service.django",
        SESSION_SERVICE_URL=url,
        # Owners of their own, so runs sharing a service never revoke each other's sessions.
        SESSION_SERVICE_SUBJECT_PREFIX=f"django-suite-{uuid.uuid4().hex[:12]}:",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        ROOT_URLCONF=None,
    )
    django.setup()

    from django.test.runner import DiscoverRunner

    class CountingRunner(DiscoverRunner):
        result = None

        def run_suite(self, suite, **kwargs):  # type: ignore[no-untyped-def]
            CountingRunner.result = super().run_suite(suite, **kwargs)
            return CountingRunner.result

    print(f"Django {django.__version__}'s tests/sessions_tests against {url}")
    runner = CountingRunner(verbosity=int(os.environ.get("DJANGO_SUITE_VERBOSITY", "1")), interactive=False)
    failures = runner.run_tests(["service_tests"])
    result = CountingRunner.result
    if result is None:
        return 1
    skipped = len(result.skipped)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - skipped - failed - len(result.expectedFailures)
    for test, reason in result.skipped:
        print(f"skipped {test.id().rsplit('.', 1)[-1]}: {reason}")
    print(f"django: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failures or failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
