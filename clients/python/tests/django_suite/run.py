"""Django's own session tests, run against ``session_service.django.SessionStore``.

Downloads the source distribution of the installed Django from PyPI (``pip
download --no-binary :all:``; cached in ``$DJANGO_SUITE_CACHE``, by default the
repository's ``.local/django-suite``, which git ignores), checks it against the
SHA-256 recorded in ``SDIST_SHA256`` (the test extra pins that Django version;
another installed version, or a mismatch, fails the run), extracts
``tests/sessions_tests/`` (refusing absolute member names and ``..``) and runs its ``SessionTestsMixin`` and
``SessionMiddlewareTests`` with ``SESSION_ENGINE = "session_service.django"``
against the service at ``$SESSION_SERVICE_URL``. A few tests are skipped, each
with its reason (``SKIPS`` in service_tests.py). Exits non-zero on any failure
or error, or when the service is not there.

When ``$SESSION_SERVICE_SESSIONS_TABLE`` names the service's sessions table, the
same tests then run a second time, in a process of their own (Django's settings
are configured once per process), with ``SESSION_SERVICE_SESSIONS_TABLE`` set:
the engine's loads read the table directly (``--direct-reads`` runs only that pass).

    SESSION_SERVICE_URL=http://127.0.0.1:9000/lambda-url/api python tests/django_suite/run.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

#: SHA-256 of each Django sdist this suite may run (``pyproject.toml``'s test extra pins
#: the version): PyPI's digest of ``django-<version>.tar.gz``. A new pin needs its line,
#: from https://pypi.org/simple/django/ (``Accept: application/vnd.pypi.simple.v1+json``)
#: or https://pypi.org/pypi/Django/<version>/json, checked against the downloaded file.
SDIST_SHA256 = {
    "5.2.19": "ad03d8abc51dbff95ebf34b27123cf0c26a3b62db7ba0cd520783686362533d1",
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_member_name(name: str) -> bool:
    """Whether a tar member's name is relative and free of ``..`` (anywhere, to be strict)
    and of backslashes: it then stays inside the extraction directory."""
    return not (PurePosixPath(name).is_absolute() or name.startswith("/") or ".." in name or "\\" in name)


def fetch_sessions_tests(version: str) -> Path:
    """The directory holding Django ``version``'s ``sessions_tests`` package (downloaded once,
    checked against ``SDIST_SHA256``)."""
    expected = SDIST_SHA256.get(version)
    if expected is None:
        raise SystemExit(
            f"Django {version} is installed but run.py has no SHA-256 for its sdist: the test extra "
            f"pins {', '.join(SDIST_SHA256)}; reinstall it (scripts/test-python-clients) or add the hash"
        )
    cache = Path(os.environ.get("DJANGO_SUITE_CACHE") or REPO / ".local" / "django-suite")
    target = cache / f"django-{version}-tests"
    stamp = target / "sdist.sha256"  # what it was extracted from: older, unchecked copies are redone
    if (target / "sessions_tests" / "tests.py").is_file() and stamp.is_file() and stamp.read_text().strip() == expected:
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
    actual = sha256(archive)
    if actual != expected:
        archive.unlink()  # not trusted, not kept: the next run downloads it again
        raise SystemExit(f"{archive.name}: SHA-256 {actual}, expected {expected}: refusing to run its tests")
    prefix = f"django-{version}/tests/sessions_tests/"
    partial = cache / f"django-{version}-tests.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        all_members = tar.getmembers()
        unsafe = [m.name for m in all_members if not safe_member_name(m.name)]
        if unsafe:
            raise SystemExit(f"{archive.name} has members outside its directory: {unsafe[:3]}")
        members = [m for m in all_members if m.name.startswith(prefix) and m.isfile()]
        if not members:
            raise SystemExit(f"{archive} has no {prefix}")
        staging = partial / "sessions_tests"
        staging.mkdir(parents=True)
        for member in members:
            destination = staging / member.name[len(prefix) :]
            destination.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member)
            assert data is not None
            destination.write_bytes(data.read())
    (partial / stamp.name).write_text(expected + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def main() -> int:
    direct_reads = "--direct-reads" in sys.argv[1:]
    table = os.environ.get("SESSION_SERVICE_SESSIONS_TABLE", "")
    if direct_reads and not table:
        print("--direct-reads: SESSION_SERVICE_SESSIONS_TABLE is not set", file=sys.stderr)
        return 3
    status = run_suite(table if direct_reads else None)
    if not direct_reads and table:
        status = subprocess.run([sys.executable, __file__, "--direct-reads"], check=False).returncode or status
    return status


def run_suite(sessions_table: str | None) -> int:
    """Django's session tests on the engine (with direct reads from ``sessions_table``, when given)."""
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
        SESSION_SERVICE_SESSIONS_TABLE=sessions_table,
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

    how = f"reading sessions from table {sessions_table!r}" if sessions_table else "reading through the API"
    print(f"Django {django.__version__}'s tests/sessions_tests against {url}, {how}")
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
    label = "django (direct reads)" if sessions_table else "django"
    print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failures or failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
