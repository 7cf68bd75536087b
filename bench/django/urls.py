"""The benchmark's pages: what a site does with its session on a login, a page view
that reads it, one that changes a key, a key change, a logout."""

from django.http import HttpRequest, JsonResponse
from django.urls import path


def login(request: HttpRequest) -> JsonResponse:
    """Logs in: puts the user and a counter in the session and changes its key."""
    request.session["user"] = "alice"
    request.session["counter"] = 0
    request.session.cycle_key()
    return JsonResponse({"user": "alice", "counter": 0})


def read(request: HttpRequest) -> JsonResponse:
    """A read-only page view: reads the session, changes nothing."""
    return JsonResponse({"user": request.session.get("user"), "counter": request.session.get("counter")})


def write(request: HttpRequest) -> JsonResponse:
    """A page view that changes one key (the counter)."""
    request.session["counter"] = request.session.get("counter", 0) + 1
    return JsonResponse({"user": request.session.get("user"), "counter": request.session["counter"]})


def cycle(request: HttpRequest) -> JsonResponse:
    """A new key for the same session (as after a password change)."""
    request.session.cycle_key()
    return JsonResponse({"user": request.session.get("user"), "counter": request.session.get("counter")})


def logout(request: HttpRequest) -> JsonResponse:
    """Logs out: ``flush()`` deletes the session and drops its key."""
    request.session.flush()
    return JsonResponse({})


urlpatterns = [
    path("login/", login),
    path("read/", read),
    path("write/", write),
    path("cycle/", cycle),
    path("logout/", logout),
]
