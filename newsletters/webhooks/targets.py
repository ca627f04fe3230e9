"""Where a webhook may point, and one signed POST to it, at the address that was checked.

A webhook URL is typed by an editor, and the worker that calls it sits inside the network:
a URL naming an internal address (or a host name resolving to one) would let an editor reach
what only the server should (SSRF). So every address a host resolves to is checked, and the
connection goes to a checked address, never to the name again: a resolver answering a public
address at the check and a private one at the connect (DNS rebinding) gains nothing. The
Host header and TLS's SNI and certificate check still use the name.

Redirects are not followed (a 3xx is a failed delivery): following one would mean checking
another URL the receiver picked, for no gain a receiver cannot have by giving its final URL.
"""

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from ..text import has_control_characters

# Replaced in unit tests, so that no test needs outside DNS; the signature of getaddrinfo.
resolve = socket.getaddrinfo
URL_MAX_LENGTH = 2000
# What a failed delivery keeps of the receiver's answer, for the delivery log.
ANSWER_SHOWN = 200
USER_AGENT = "newsletters-webhooks/1"
# The refusal of each kind of address ``forbidden`` names: whole sentences, each translated
# as one.
REFUSALS = {
    "loopback": _l(
        "refused: %(host)s resolves to %(address)s, a loopback address; "
        "webhooks may only go to public addresses"
    ),
    "link-local": _l(
        "refused: %(host)s resolves to %(address)s, a link-local address; "
        "webhooks may only go to public addresses"
    ),
    "multicast": _l(
        "refused: %(host)s resolves to %(address)s, a multicast address; "
        "webhooks may only go to public addresses"
    ),
    "private": _l(
        "refused: %(host)s resolves to %(address)s, a private address; "
        "webhooks may only go to public addresses"
    ),
    "reserved": _l(
        "refused: %(host)s resolves to %(address)s, a reserved address; "
        "webhooks may only go to public addresses"
    ),
    "unspecified": _l(
        "refused: %(host)s resolves to %(address)s, a unspecified address; "
        "webhooks may only go to public addresses"
    ),
    "non-public": _l(
        "refused: %(host)s resolves to %(address)s, a non-public address; "
        "webhooks may only go to public addresses"
    ),
}


class TargetError(ValueError):
    """A URL a webhook may not be sent to, or cannot reach; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URL, taken apart."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with its query


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to a POST: its status, and a little of its text for the log."""

    status: int
    reason: str
    location: str | None
    text: str

    @property
    def ok(self) -> bool:
        """Tell whether the receiver took the delivery (a 2xx)."""
        return 200 <= self.status < 300


def parse(url: str) -> Target:
    """Return ``url`` taken apart if a webhook may be sent to it; raise TargetError if not."""
    url = (url or "").strip()
    if not url:
        raise TargetError(_("give the URL the webhook is sent to, like https://example.org/hook"))
    if len(url) > URL_MAX_LENGTH:
        raise TargetError(
            ngettext(
                "the URL is %(num)d character long; it may have %(most)d",
                "the URL is %(num)d characters long; it may have %(most)d",
                len(url),
                most=URL_MAX_LENGTH,
            )
        )
    if has_control_characters(url) or " " in url:
        raise TargetError(_("the URL holds a space or a control character"))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(_("this is not a URL: %(reason)s", reason=exc)) from None
    if parts.scheme not in ("http", "https"):
        raise TargetError(
            _(
                "only http:// and https:// URLs are allowed, not %(scheme)s",
                scheme=repr(parts.scheme),
            )
        )
    if not parts.hostname:
        raise TargetError(_("the URL names no host"))
    if parts.username is not None or parts.password is not None:
        raise TargetError(_("the URL may not hold a user name or password"))
    if not parts.hostname.isascii():
        raise TargetError(_("write the host name in its ASCII (IDNA, xn--) form"))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Target(url, parts.scheme, parts.hostname, port or default, path)


def addresses(target: Target) -> list[str]:
    """Return the addresses ``target``'s host resolves to, each checked; raise TargetError.

    Every address is checked, not only the one used: a name that resolves to a public and a
    private address is refused, whichever a connection would pick.
    """
    try:
        found = [ipaddress.ip_address(target.host)]
    except ValueError:
        try:
            infos = resolve(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetError(
                _("cannot resolve %(host)s: %(reason)s", host=target.host, reason=exc)
            ) from None
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not found:
        raise TargetError(_("%(host)s resolves to no address", host=target.host))
    if not current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
        for address in found:
            kind = forbidden(address)
            if kind:
                raise TargetError(REFUSALS[kind] % {"host": target.host, "address": address})
    return [str(address) for address in found]


def forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return what kind of address a webhook may not reach (e.g. ``"private"``); None if public."""
    if address.version == 6 and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel.
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-public"  # shared (100.64/10), documentation and the like
    return None


def check(url: str) -> Target:
    """Return ``url`` taken apart if a webhook may go there now; raise TargetError if not."""
    target = parse(url)
    addresses(target)
    return target


def post(target: Target, body: bytes, headers: dict[str, str]) -> Answer:
    """POST ``body`` to ``target`` at a checked address; raise TargetError if it cannot.

    The timeout (WEBHOOK_TIMEOUT_SECONDS) bounds the connection and each read; a connection
    refused at one address tries the next the host resolved to.

    Its own refusals are not translated: the worker writes them into the delivery log, outside
    any editor's request.
    """
    timeout = current_app.config["WEBHOOK_TIMEOUT_SECONDS"]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    last: Exception | None = None
    for address in addresses(target):
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(target.host, target.port, address, timeout)
        else:
            connection = _PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            try:
                connection.connect()
            except ConnectionRefusedError as exc:
                last = exc
                continue
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read(ANSWER_SHOWN).decode("utf-8", "replace")
            return Answer(response.status, response.reason, response.getheader("Location"), text)
        except TimeoutError:
            raise TargetError(f"no answer within {timeout} s (timeout)") from None
        except ssl.SSLError as exc:
            raise TargetError(f"TLS failed: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TargetError(f"connection failed: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()
    raise TargetError(f"connection refused by {target.host}:{target.port}: {last}")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address``, sending ``host`` in its Host header."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """An HTTPS connection to ``address``: SNI and the certificate check use ``host``."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, address, timeout)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)
