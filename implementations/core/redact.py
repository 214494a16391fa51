"""One place that strips credentials: every URL, command line or message that is stored, printed, served
or handed to another process goes through here first (docs/security.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a secret (redis-py, kombu and most URL forms).
SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "auth", "access_token",
                           "api_key", "apikey", "key"})
# scheme://userinfo@ anywhere in a text (a log line, an error, one argv word).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^@\s/?#]*)@")
_SECRET_NAMES = "|".join(sorted(SECRET_PARAMS))
_QUERY_SECRET = re.compile(r"(?P<key>[?&;](?:" + _SECRET_NAMES + r")=)(?P<value>[^&;#\s]*)", re.IGNORECASE)


def _mask_userinfo(userinfo: str) -> str:
    if not userinfo:
        return userinfo
    user, sep, _ = userinfo.partition(":")
    # redis://SECRET@host: redis-py reads a lone userinfo as a user name, kombu and others as a password.
    return f"{user}:{MASK}" if sep else MASK


def redact_url(url: str | None) -> str | None:
    """``redis://user:secret@host/0?password=x`` → ``redis://user:***@host/0?password=***``."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or not parts.netloc:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{_mask_userinfo(userinfo)}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL credential inside a free text (an error message, a log line)."""
    if "://" not in text and "=" not in text:
        return text
    out = _USERINFO.sub(lambda m: m.group("scheme") + _mask_userinfo(m.group("userinfo")) + "@", text)
    return _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, out)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line as it may be stored: URLs redacted, and the value after ``--token``/``--password``."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        word = str(word)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = word.partition("=")
        if flag in ("--token", "--password", "--requirepass"):
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(word)
                hide_next = True
            continue
        out.append(redact_text(word))
    return out


def strip_url(url: str | None) -> str | None:
    """The URL without any credential at all (for copies that must not even say there was one)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.netloc or "@" not in parts.netloc:
        return redact_url(url)
    hostport = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        query = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                           if k.lower() not in SECRET_PARAMS])
    return urlunsplit((parts.scheme, hostport, parts.path, query, parts.fragment))
