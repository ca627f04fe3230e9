"""Deliver rendered mails: SMTP (plain, STARTTLS, TLS), files, or the console."""

import contextlib
import re
import smtplib
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from .messages import Mail


class TemporaryFailure(Exception):
    """Delivery failed in a way that may succeed later (connection lost, 4xx reply)."""


class PermanentFailure(Exception):
    """Delivery failed for good (5xx reply): retrying would fail the same way."""


class RecipientRefused(PermanentFailure):
    """The server refused the recipient's address for good (see ``refuses_recipient``)."""


class TransportFailure(Exception):
    """The mail server cannot be used at all (no connection, greeting, TLS or login).

    No message is at fault: the worker puts the message back uncounted and waits.
    """


# RFC 3463's enhanced status code at the start of a reply's text: class.subject.detail.
ENHANCED_CODE = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")
# Replies without an enhanced code: RFC 5321's codes for a mailbox that is unavailable (550),
# not here (551) or not allowed as a name (553). Not 552 (storage exceeded: a full mailbox
# or a message too big) nor 554 (transaction failed: mostly content or policy).
RECIPIENT_CODES = {550, 551, 553}


def refuses_recipient(code: int, text: bytes | str) -> bool:
    """Tell whether the 5xx reply ``code text`` refuses the recipient's address for good.

    One rule for the answers to RCPT TO and to the message (DATA): relays that check
    addresses only once they have the message answer there, often with 550 or 554. An
    enhanced code decides when there is one: X.1.x is about the address (except X.1.7 and
    X.1.8, the sender's), X.2.1 a disabled mailbox. Not X.2.2, a full mailbox, which its
    owner may empty; not X.7.x, policy, which at Gmail and others judges the message or
    our sender's reputation (spam, "relay access denied"), not the address: suppressing
    those would cut off readers for a fault of ours. Such refusals still fail the mail
    for good, without a suppression.
    """
    if not 500 <= code < 600:
        return False
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    enhanced = ENHANCED_CODE.match(text)
    if enhanced is None:
        return code in RECIPIENT_CODES
    _class, subject, detail = (int(part) for part in enhanced.groups())
    return (subject == 1 and detail not in (7, 8)) or (subject, detail) == (2, 1)


def _refused(stage: str, replies: list[tuple[int, bytes]]) -> Exception:
    """Return the failure that ``replies`` of the server at ``stage`` mean, to raise."""
    detail = "; ".join(f"{code} {text!r}" for code, text in replies)
    if all(refuses_recipient(code, text) for code, text in replies):
        return RecipientRefused(f"{stage}: {detail}")
    if all(500 <= code < 600 for code, _ in replies):
        return PermanentFailure(f"{stage}: {detail}")
    return TemporaryFailure(f"{stage}: {detail}")


# An ASCII dot-atom address: smtplib's quoteaddr() would parse it with the email package's
# address parser (a third of the client's time per mail) only to write it back as it is.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


class _PlainAddresses:
    """smtplib's MAIL and RCPT commands, writing addresses that need no quoting as they are."""

    def mail(self, sender, options=()):
        if PLAIN_ADDRESS.fullmatch(sender) is None or any(o.lower() == "smtputf8" for o in options):
            return super().mail(sender, options)
        listed = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("mail", f"FROM:<{sender}>{listed}")
        return self.getreply()

    def rcpt(self, recip, options=()):
        if PLAIN_ADDRESS.fullmatch(recip) is None:
            return super().rcpt(recip, options)
        listed = " " + " ".join(options) if options and self.does_esmtp else ""
        self.putcmd("rcpt", f"TO:<{recip}>{listed}")
        return self.getreply()


class _SMTP(_PlainAddresses, smtplib.SMTP):
    pass


class _SMTP_SSL(_PlainAddresses, smtplib.SMTP_SSL):
    pass


class SMTPTransport:
    """Send over one SMTP connection, opened on first use and reused until closed."""

    # Links in the worker's report would put working secrets into production logs.
    shows_links = False

    def __init__(self, url: str, timeout: float = 30):
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or {"smtps": 465, "smtp+starttls": 587}.get(parts.scheme, 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.connection: smtplib.SMTP | None = None

    def describe(self) -> str:
        """Name this transport for logs and status, without its credentials."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        if self.scheme == "smtps":
            connection = _SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = _SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.scheme == "smtp+starttls":
                connection.starttls(context=ssl.create_default_context())
            # Greet now rather than inside send_message(): a refused EHLO is the server's
            # problem, and must not be taken for a problem of the first message.
            connection.ehlo_or_helo_if_needed()
            if self.username:
                connection.login(self.username, self.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def open(self) -> None:
        """Connect, greet and log in unless connected; raise ``TransportFailure`` if not."""
        if self.connection is not None:
            return
        try:
            self.connection = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportFailure(
                f"login refused as {self.username!r}: {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportFailure(f"cannot use {self.describe()}: {_explain(exc)}") from None

    def send(self, mail: "Mail") -> str:
        """Send ``mail``; raise ``TransportFailure``, ``TemporaryFailure`` or ``PermanentFailure``.

        ``RecipientRefused``, a ``PermanentFailure``, says the address itself was refused.
        """
        self.open()
        try:
            options = ()
            if mail.smtputf8:
                # As smtplib's send_message() would refuse it, before a word of it is sent.
                if not self.connection.has_extn("smtputf8"):
                    raise smtplib.SMTPNotSupportedError(
                        "One or more source or delivery addresses require internationalized "
                        "email support, but the server does not advertise the required "
                        "SMTPUTF8 capability"
                    )
                options = ("SMTPUTF8", "BODY=8BITMIME")
            # The mail's bytes are ready (messages.Mail): send_message() would build them again.
            self.connection.sendmail(mail.sender, [mail.recipient], mail.data, options)
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            raise _refused("recipient refused", list(exc.recipients.values())) from None
        except smtplib.SMTPSenderRefused as exc:
            # MAIL_FROM is the same on every mail: its refusal is the relay's setting (or a
            # relay-wide throttle), not this message's fault.
            self.close()
            raise TransportFailure(
                f"sender {exc.sender!r} refused: {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except smtplib.SMTPDataError as exc:
            self.close()
            replies = [(exc.smtp_code, exc.smtp_error)]
            raise _refused("message refused", replies) from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            reply = f"{exc.smtp_code} {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(reply) from None
            raise TemporaryFailure(reply) from None
        except smtplib.SMTPNotSupportedError as exc:
            # An address with a non-ASCII local part needs SMTPUTF8 (RFC 6531); a server
            # without it will refuse this mail however often it is retried.
            self.close()
            raise PermanentFailure(f"{type(exc).__name__}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise TemporaryFailure(_explain(exc)) from None
        return f"sent to {self.describe()}"

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.connection.quit()
            self.connection = None


def _explain(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class FileTransport:
    """Write each mail as an ``.eml`` file into a folder: development's mail server."""

    shows_links = True

    def __init__(self, url: str):
        parts = urlsplit(url)
        # file:///abs/dir and file://localhost/abs/dir are absolute; file://dir (which
        # urlsplit reads as a host named "dir") means a folder below the working directory.
        host = "" if parts.netloc == "localhost" else parts.netloc
        self.folder = Path(unquote(host + parts.path))

    def describe(self) -> str:
        """Name this transport for logs and status."""
        return f"file://{self.folder}"

    def send(self, mail: "Mail") -> str:
        message_id = mail.message_id.strip("<>").partition("@")[0]
        path = self.folder / f"{message_id}.eml"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(mail.data.replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise TemporaryFailure(f"cannot write {path}: {exc}") from None
        return f"written to {path}"

    def close(self) -> None:
        pass


class ConsoleTransport:
    """Print each mail on standard output."""

    shows_links = True

    def __init__(self, url: str):
        pass

    def describe(self) -> str:
        """Name this transport for logs and status."""
        return "console:"

    def send(self, mail: "Mail") -> str:
        sys.stdout.write(mail.as_text() + "\n")
        sys.stdout.flush()
        return "printed"

    def close(self) -> None:
        pass


TRANSPORTS = {
    "smtp": SMTPTransport,
    "smtp+starttls": SMTPTransport,
    "smtps": SMTPTransport,
    "file": FileTransport,
    "console": ConsoleTransport,
}


def from_url(url: str):
    """Return the transport that ``MAIL_URL`` names."""
    scheme = urlsplit(url).scheme
    if scheme not in TRANSPORTS:
        known = ", ".join(f"{name}:" for name in TRANSPORTS)
        raise ValueError(
            f"NEWSLETTERS_MAIL_URL has an unknown scheme {scheme!r}; use one of {known}"
        )
    return TRANSPORTS[scheme](url)
