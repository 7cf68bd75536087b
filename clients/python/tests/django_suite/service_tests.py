"""Django's SessionTestsMixin and SessionMiddlewareTests on session_service.django
(loaded by run.py, which puts Django's ``sessions_tests`` on ``sys.path``)."""

from __future__ import annotations

import secrets
import unittest
import uuid
from datetime import datetime, timezone

import sessions_tests.tests as upstream
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.http import HttpResponse
from django.test import SimpleTestCase, TestCase, override_settings

from session_service.django import (
    SessionStore,
    get_client,
    list_user_sessions,
    revoke_user_sessions,
    user_subject,
)

#: Upstream tests this engine cannot run, each with why. Keep it small.
SKIPS: dict[str, dict[str, str]] = {
    "ServiceSessionMiddlewareTests": {
        "test_empty_session_saved": "reads django.contrib.sessions.models.Session rows from the database; "
        "test_empty_session_saved_in_the_service checks the same against the service",
    },
}


def _skip(cls: type) -> type:
    for name, reason in SKIPS.get(cls.__name__, {}).items():
        assert hasattr(cls, name), f"{cls.__name__}.{name} is no longer upstream: drop the skip"

        @unittest.skip(reason)
        def skipped(self: object) -> None:  # pragma: no cover
            pass

        setattr(cls, name, skipped)
    return cls


@_skip
class ServiceSessionTests(upstream.SessionTestsMixin, SimpleTestCase):
    """Every test of Django's SessionTestsMixin, on the service."""

    backend = SessionStore


@_skip
@override_settings(SESSION_ENGINE="session_service.django")
class ServiceSessionMiddlewareTests(upstream.SessionMiddlewareTests):
    """Django's SessionMiddlewareTests with SESSION_ENGINE = "session_service.django"."""

    def test_empty_session_saved_in_the_service(self) -> None:
        """Upstream's test_empty_session_saved, reading the session from the service."""
        from django.contrib.sessions.middleware import SessionMiddleware

        def response_set_session(request):  # type: ignore[no-untyped-def]
            request.session["foo"] = "bar"
            return HttpResponse("Session test")

        request = self.request_factory.get("/")
        middleware = SessionMiddleware(response_set_session)
        response = middleware(request)
        self.assertEqual(tuple(request.session.items()), (("foo", "bar"),))
        self.assertIn(f"Set-Cookie: sessionid={request.session.session_key}", str(response.cookies))
        del request.session["foo"]
        response = middleware.process_response(request, HttpResponse("Session test"))
        self.assertEqual(dict(request.session.values()), {})
        self.assertEqual(get_client().get(request.session.session_key).data, {})
        self.assertIn(f"Set-Cookie: sessionid={request.session.session_key}", str(response.cookies))


#: A short absolute lifetime for anonymous sessions, so a login that kept it would show.
SHORT_ABSOLUTE = 300


def assert_fresh(test: SimpleTestCase, session_id: str, subject: str) -> None:
    """The session is ``subject``'s and has its full lifetimes from about now."""
    stored = get_client().get(session_id)
    test.assertEqual(stored.subject, subject)
    age = (datetime.now(timezone.utc) - stored.created_at).total_seconds()
    test.assertLess(abs(age), 120, "created now, not when the anonymous session was")
    test.assertEqual((stored.absolute_expires_at - stored.created_at).total_seconds(), SessionStore._absolute())
    left = (stored.absolute_expires_at - datetime.now(timezone.utc)).total_seconds()
    test.assertAlmostEqual(left, SessionStore._absolute(), delta=120)


class ServiceOwnershipTests(SimpleTestCase):
    """What this engine adds: sessions owned by the logged-in user, expiry as the idle timeout."""

    def test_a_login_gets_a_fresh_session_not_the_anonymous_ones_lifetime(self) -> None:
        user_id = f"django-fresh-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        with override_settings(SESSION_SERVICE_ABSOLUTE_AGE=SHORT_ABSOLUTE):
            session = SessionStore()
            session["cart"] = [1]
            session.save()
        anonymous_key = session.session_key
        anonymous = get_client().get(anonymous_key)
        self.assertEqual((anonymous.absolute_expires_at - anonymous.created_at).total_seconds(), SHORT_ABSOLUTE)
        # What django.contrib.auth.login() does: cycle the key (no owner yet: one atomic
        # rotate, which keeps the absolute expiry), then store the user and save.
        session.cycle_key()
        cycled_key = session.session_key
        self.assertFalse(session.exists(anonymous_key))
        self.assertEqual(get_client().get(cycled_key).absolute_expires_at, anonymous.absolute_expires_at)
        session[SESSION_KEY] = user_id
        session.save()
        self.assertNotIn(session.session_key, (anonymous_key, cycled_key))
        self.assertFalse(session.exists(cycled_key))
        assert_fresh(self, session.session_key, user_subject(user_id))
        self.assertEqual(get_client().get(session.session_key).data, {"cart": [1], SESSION_KEY: user_id})
        self.assertEqual(len(list_user_sessions(user_id)), 1)
        # Saves after the login write the same session.
        login_key = session.session_key
        session["theme"] = "dark"
        session.save()
        self.assertEqual(session.session_key, login_key)
        self.assertEqual(get_client().get(login_key).data["theme"], "dark")

    def test_cycle_key_after_the_user_is_stored_is_a_login(self) -> None:
        user_id = f"django-cycle-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        with override_settings(SESSION_SERVICE_ABSOLUTE_AGE=SHORT_ABSOLUTE):
            session = SessionStore()
            session["a"] = 1
            session.save()
        anonymous_key = session.session_key
        session[SESSION_KEY] = user_id
        session.cycle_key()
        self.assertNotEqual(session.session_key, anonymous_key)
        self.assertFalse(session.exists(anonymous_key))
        assert_fresh(self, session.session_key, user_subject(user_id))
        session.save()
        self.assertEqual(SessionStore(session.session_key).load(), {"a": 1, SESSION_KEY: user_id})

    def test_a_login_never_resurrects_a_session_deleted_elsewhere(self) -> None:
        user_id = f"django-gone-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        session = SessionStore()
        session["cart"] = [1]
        session.save()
        key = session.session_key
        request_session = SessionStore(key)
        self.assertEqual(request_session["cart"], [1])  # loaded: the session was there
        SessionStore(key).delete()  # a logout in another tab
        request_session[SESSION_KEY] = user_id
        with self.assertRaises(UpdateError):
            request_session.save()
        self.assertEqual(list_user_sessions(user_id), [])
        self.assertFalse(request_session.exists(key))

    def test_cycle_key_of_a_login_revoked_during_the_request_never_brings_it_back(self) -> None:
        # What update_session_auth_hash() does after a password change: cycle the key of
        # the request's session, while "log out everywhere" revokes the user's sessions.
        user_id = f"django-revoked-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        login = SessionStore()
        login[SESSION_KEY] = user_id
        login.save()
        request_session = SessionStore(login.session_key)
        self.assertEqual(request_session[SESSION_KEY], user_id)  # loaded: the login was live
        self.assertEqual(revoke_user_sessions(user_id), 1)  # the revoke wins the race
        request_session.cycle_key()
        self.assertNotIn(SESSION_KEY, request_session)
        self.assertEqual(list_user_sessions(user_id), [], "the login stays revoked")
        cycled = get_client().get(request_session.session_key)
        self.assertEqual((cycled.subject, cycled.data), (None, {}), "a new anonymous, empty session")
        request_session.save()
        self.assertEqual(SessionStore(request_session.session_key).load(), {})

    def test_cycle_key_into_a_login_of_a_session_deleted_meanwhile_creates_no_login(self) -> None:
        # The login branch: the session is not the user's yet (stored, then the user id
        # set), and another tab logs it out before the key is cycled.
        user_id = f"django-gone-login-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        session = SessionStore()
        session["cart"] = [1]
        session.save()
        key = session.session_key
        session[SESSION_KEY] = user_id
        SessionStore(key).delete()
        session.cycle_key()
        self.assertEqual(list_user_sessions(user_id), [], "no login was created")
        self.assertNotIn(SESSION_KEY, session)
        self.assertEqual(get_client().get(session.session_key).data, {})

    async def test_async_cycle_key_of_a_revoked_login_never_brings_it_back(self) -> None:
        user_id = f"django-async-revoked-{uuid.uuid4()}"
        self.addCleanup(revoke_user_sessions, user_id)
        login = SessionStore()
        await login.aset(SESSION_KEY, user_id)
        await login.asave()
        request_session = SessionStore(login.session_key)
        self.assertEqual(await request_session.aget(SESSION_KEY), user_id)
        self.assertEqual(revoke_user_sessions(user_id), 1)
        await request_session.acycle_key()
        self.assertIsNone(await request_session.aget(SESSION_KEY))
        self.assertEqual(list_user_sessions(user_id), [])
        self.assertEqual(get_client().get(request_session.session_key).data, {})

    async def test_async_login_gets_a_fresh_session(self) -> None:
        user_id = f"django-async-fresh-{uuid.uuid4()}"
        with override_settings(SESSION_SERVICE_ABSOLUTE_AGE=SHORT_ABSOLUTE):
            session = SessionStore()
            await session.aset("a", 1)
            await session.asave()
        anonymous_key = session.session_key
        await session.acycle_key()
        cycled_key = session.session_key
        await session.aset(SESSION_KEY, user_id)
        await session.asave()
        for old in (anonymous_key, cycled_key):
            self.assertFalse(await session.aexists(old))
        assert_fresh(self, session.session_key, user_subject(user_id))
        self.assertEqual(revoke_user_sessions(user_id), 1)

        gone = SessionStore()
        await gone.aset("a", 1)
        await gone.asave()
        request_session = SessionStore(gone.session_key)
        self.assertEqual(await request_session.aget("a"), 1)
        await gone.adelete()
        await request_session.aset(SESSION_KEY, user_id)
        with self.assertRaises(UpdateError):
            await request_session.asave()
        self.assertEqual(list_user_sessions(user_id), [])

    def test_an_expiry_in_the_past_creates_nothing_and_never_a_none_key(self) -> None:
        session = SessionStore()
        session["foo"] = "bar"
        session.set_expiry(-10)
        session.save()
        placeholder = session.session_key
        self.assertIsNotNone(placeholder)
        self.assertFalse(session.exists(placeholder))
        self.assertEqual(SessionStore(placeholder).load(), {})
        session.delete()  # nothing to delete
        session.set_expiry(300)
        session.save()  # now a real one
        self.addCleanup(session.delete)
        self.assertNotEqual(session.session_key, placeholder)
        self.assertEqual(get_client().get(session.session_key).data, {"foo": "bar", "_session_expiry": 300})

    def test_a_login_makes_the_session_the_users(self) -> None:
        user_id = f"django-{uuid.uuid4()}"
        session = SessionStore()
        session["cart"] = [1]
        session.save()
        anonymous_key = session.session_key
        self.assertIsNone(get_client().get(anonymous_key).subject)
        owner = user_subject(user_id)
        # What django.contrib.auth.login() does: cycle the key, then store the user.
        session.cycle_key()
        session[SESSION_KEY] = user_id
        session.save()
        self.assertFalse(session.exists(anonymous_key))
        stored = get_client().get(session.session_key)
        self.assertEqual(stored.subject, owner)
        self.assertEqual(stored.data, {SESSION_KEY: user_id, "cart": [1]})
        self.assertEqual([s.handle for s in list_user_sessions(user_id)], [stored.handle])

        other = SessionStore()
        other[SESSION_KEY] = user_id
        other.save()  # a login on another browser: created owned
        self.assertEqual(get_client().get(other.session_key).subject, owner)
        self.assertEqual(revoke_user_sessions(user_id, except_session=other), 1)
        self.assertEqual(SessionStore(session.session_key).load(), {})
        self.assertEqual(revoke_user_sessions(user_id), 1)
        self.assertFalse(other.exists(other.session_key))

    def test_the_expiry_age_is_the_idle_timeout(self) -> None:
        session = SessionStore()
        session.set_expiry(300)
        session.save()
        self.addCleanup(session.delete)
        self.assertEqual(get_client().get(session.session_key).idle_timeout_seconds, 300)
        session.set_expiry(None)
        session.save()
        self.assertEqual(get_client().get(session.session_key).idle_timeout_seconds, 1209600)
        absolute = get_client().get(session.session_key)
        self.assertEqual((absolute.absolute_expires_at - absolute.created_at).total_seconds(), 2592000)

    async def test_async_login_and_cycle(self) -> None:
        user_id = f"django-async-{uuid.uuid4()}"
        session = SessionStore()
        await session.aset("a", 1)
        await session.asave()
        await session.acycle_key()
        await session.aset(SESSION_KEY, user_id)
        await session.asave()
        reloaded = SessionStore(session.session_key)
        self.assertEqual(await reloaded.aget("a"), 1)
        self.assertEqual(reloaded._owner, user_subject(user_id))
        self.assertEqual(revoke_user_sessions(user_id), 1)

    def test_nested_key_order_survives_the_round_trip(self) -> None:
        session = SessionStore()
        session["m"] = {"z": 1, "a": {"y": 2, "b": 3}}
        session.save()
        self.addCleanup(session.delete)
        session.cycle_key()
        session.save()
        loaded = SessionStore(session.session_key).load()
        self.assertEqual(list(loaded["m"]), ["z", "a"])
        self.assertEqual(list(loaded["m"]["a"]), ["y", "b"])

    def test_top_level_key_order_survives_the_round_trip(self) -> None:
        session = SessionStore()
        session.update({"z": 1, "a": 2, "m": 3})
        session.save()
        self.addCleanup(session.delete)
        self.assertEqual(list(SessionStore(session.session_key).load()), ["z", "a", "m"])

    def test_clear_expired_is_a_no_op(self) -> None:
        with self.assertLogs("session_service.django", "INFO"):
            SessionStore.clear_expired()



class ServiceConcurrentSaveTests(SimpleTestCase):
    """Two requests that load one session and save: a save sends only what its request
    changed, so changes to different keys both land; the same key is last-writer-wins."""

    def test_a_300_kb_session_round_trips_and_takes_a_change(self) -> None:
        blob = secrets.token_urlsafe(225_000)
        key = self.stored({"blob": blob, "n": 1})
        first = self.loaded(key)
        self.assertEqual(first["blob"], blob)
        first["n"] = 2
        first.save()
        self.assertEqual(dict(self.loaded(key)), {"blob": blob, "n": 2})

    def stored(self, data: dict[str, object]) -> str:
        """A session holding ``data``; its key."""
        session = SessionStore()
        session.update(data)
        session.save()
        self.addCleanup(SessionStore().delete, session.session_key)
        return session.session_key

    def loaded(self, key: str) -> SessionStore:
        """A request's session: loaded from the service, as the first access does."""
        session = SessionStore(key)
        session.keys()
        return session

    def test_two_requests_changing_different_keys_both_land(self) -> None:
        key = self.stored({"x": 0})
        first, second = self.loaded(key), self.loaded(key)
        first["a"] = 1
        second["b"] = 2
        first.save()
        second.save()
        self.assertEqual(SessionStore(key).load(), {"x": 0, "a": 1, "b": 2})

    async def test_async_two_requests_changing_different_keys_both_land(self) -> None:
        key = self.stored({"x": 0})
        first, second = SessionStore(key), SessionStore(key)
        await first.akeys()
        await second.akeys()
        await first.aset("a", 1)
        await second.aset("b", 2)
        await first.asave()
        await second.asave()
        self.assertEqual(await SessionStore(key).aload(), {"x": 0, "a": 1, "b": 2})

    def test_the_same_key_is_last_writer_wins(self) -> None:
        key = self.stored({"a": "loaded"})
        first, second = self.loaded(key), self.loaded(key)
        first["a"] = "first"
        first["other"] = 1
        second["a"] = "second"
        first.save()
        second.save()
        self.assertEqual(SessionStore(key).load(), {"a": "second", "other": 1})
        first["a"] = "first again"
        first.save()
        self.assertEqual(SessionStore(key).load(), {"a": "first again", "other": 1})

    def test_a_nested_removal_and_a_top_level_addition_both_land(self) -> None:
        key = self.stored({"prefs": {"lang": "de", "theme": {"name": "dark", "contrast": 2}}})
        first, second = self.loaded(key), self.loaded(key)
        del first["prefs"]["theme"]["contrast"]
        first.modified = True  # Django notices no change inside a value
        second["cart"] = [1]
        second.save()
        first.save()
        loaded = SessionStore(key).load()
        self.assertEqual(loaded, {"prefs": {"lang": "de", "theme": {"name": "dark"}}, "cart": [1]})
        self.assertEqual(list(loaded), ["prefs", "cart"])

    def test_a_value_set_to_none_round_trips_and_keeps_a_change_made_meanwhile(self) -> None:
        # None cannot go in a merge patch (null removes): a full write conditioned on
        # the version loaded, which fails (the other request wrote first), then the
        # same change on the session as it is now.
        key = self.stored({"a": 1, "b": 1, "m": {"k": 1}})
        first, second = self.loaded(key), self.loaded(key)
        first["a"] = None
        first["m"]["k"] = None
        second["b"] = 2
        second.save()
        first.save()
        self.assertEqual(get_client().get(key).data, {"a": None, "b": 2, "m": {"k": None}})
        self.assertEqual(SessionStore(key).load(), {"a": None, "b": 2, "m": {"k": None}})

    async def test_async_a_value_set_to_none_keeps_a_change_made_meanwhile(self) -> None:
        key = self.stored({"a": 1, "b": 1})
        first, second = SessionStore(key), SessionStore(key)
        await first.aset("a", None)
        await second.aset("b", 2)
        await second.asave()
        await first.asave()
        self.assertEqual(await SessionStore(key).aload(), {"a": None, "b": 2})

    def test_a_second_save_sends_only_its_new_changes(self) -> None:
        key = self.stored({"x": 0})
        first, second = self.loaded(key), self.loaded(key)
        first["a"] = 1
        first.save()
        second["b"] = 2
        second.save()
        first["a"] = 2
        first.save()
        self.assertEqual(SessionStore(key).load(), {"x": 0, "a": 2, "b": 2})

    def test_an_unchanged_save_writes_no_data(self) -> None:
        # SESSION_SAVE_EVERY_REQUEST saves sessions nobody changed: such a save keeps
        # what another request wrote meanwhile, and writes no new version.
        key = self.stored({"x": 0})
        first, second = self.loaded(key), self.loaded(key)
        second["b"] = 2
        second.save()
        version = get_client().get(key).version
        first.save()
        stored = get_client().get(key)
        self.assertEqual((stored.data, stored.version), ({"x": 0, "b": 2}, version))
        SessionStore(key).delete()
        with self.assertRaises(UpdateError):  # still never resurrected
            first.save()

    def test_an_expiry_change_keeps_a_change_made_meanwhile(self) -> None:
        # The idle timeout needs a full write (a PATCH keeps it), conditioned and retried.
        key = self.stored({"x": 0})
        first, second = self.loaded(key), self.loaded(key)
        first.set_expiry(300)
        second["b"] = 2
        second.save()
        first.save()
        stored = get_client().get(key)
        self.assertEqual(stored.data, {"x": 0, "_session_expiry": 300, "b": 2})
        self.assertEqual(stored.idle_timeout_seconds, 300)

    def test_cycle_key_then_save_keeps_a_change_made_meanwhile(self) -> None:
        key = self.stored({"x": 0})
        first, second = self.loaded(key), self.loaded(key)
        first["a"] = 1
        second["b"] = 2
        second.save()
        first.cycle_key()
        self.addCleanup(first.delete)
        first.save()
        self.assertEqual(SessionStore(first.session_key).load(), {"x": 0, "b": 2, "a": 1})

    def test_a_cleared_session_is_written_whole(self) -> None:
        key = self.stored({"x": 0, "y": 1})
        session = self.loaded(key)
        session.clear()
        session["z"] = 2
        session.save()
        self.assertEqual(SessionStore(key).load(), {"z": 2})


class ServiceAuthLoginTests(TestCase):
    """django.contrib.auth's login() and logout() through SessionMiddleware."""

    def test_login_on_an_old_anonymous_session_gets_full_lifetimes(self) -> None:
        from django.contrib.auth import login
        from django.contrib.auth.models import User
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.test import RequestFactory

        user = User.objects.create_user("grace", password="x")
        self.addCleanup(revoke_user_sessions, user.pk)
        anonymous = get_client().create({"theme": "dark"}, absolute_timeout_seconds=SHORT_ABSOLUTE)

        def log_in(request):  # type: ignore[no-untyped-def]
            self.assertEqual(request.session["theme"], "dark")
            login(request, user)
            return HttpResponse()

        request = RequestFactory().get("/")
        request.COOKIES["sessionid"] = anonymous.id
        response = SessionMiddleware(log_in)(request)
        key = response.cookies["sessionid"].value
        self.assertNotEqual(key, anonymous.id)
        self.assertFalse(SessionStore().exists(anonymous.id))
        assert_fresh(self, key, user_subject(user.pk))
        self.assertEqual(get_client().get(key).data["theme"], "dark")
        self.assertEqual(len(list_user_sessions(user.pk)), 1)

    def test_an_expiry_in_the_past_never_sets_a_none_cookie(self) -> None:
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.test import RequestFactory

        def expire(request):  # type: ignore[no-untyped-def]
            request.session["foo"] = "bar"
            request.session.set_expiry(-10)
            return HttpResponse()

        response = SessionMiddleware(expire)(RequestFactory().get("/"))
        cookie = response.cookies["sessionid"]
        self.assertNotIn(cookie.value, ("", "None"))
        self.assertLessEqual(int(cookie["max-age"]), 0)
        self.assertFalse(SessionStore().exists(cookie.value))
        self.assertEqual(SessionStore(cookie.value).load(), {})

    def test_login_and_logout(self) -> None:
        from django.contrib.auth import login, logout
        from django.contrib.auth.models import User
        from django.contrib.sessions.middleware import SessionMiddleware
        from django.test import RequestFactory

        user = User.objects.create_user("ada", password="x")
        subject = user_subject(user.pk)  # run.py sets a prefix of its own per run

        def log_in(request):  # type: ignore[no-untyped-def]
            request.session["theme"] = "dark"
            request.session.save()
            request.anonymous_key = request.session.session_key
            login(request, user)
            return HttpResponse()

        request = RequestFactory().get("/")
        response = SessionMiddleware(log_in)(request)
        key = response.cookies["sessionid"].value
        self.assertNotEqual(key, request.anonymous_key)
        self.assertFalse(SessionStore().exists(request.anonymous_key))
        stored = get_client().get(key)
        self.assertEqual(stored.subject, subject)
        self.assertEqual(stored.data["theme"], "dark")
        self.assertEqual(stored.data[SESSION_KEY], str(user.pk))
        self.assertEqual([s.handle for s in list_user_sessions(user.pk)], [stored.handle])

        def log_out(request):  # type: ignore[no-untyped-def]
            request.user = user
            logout(request)
            return HttpResponse()

        request = RequestFactory().get("/")
        request.COOKIES["sessionid"] = key
        SessionMiddleware(log_out)(request)
        self.assertFalse(SessionStore().exists(key))
        self.assertEqual(list_user_sessions(user.pk), [])
