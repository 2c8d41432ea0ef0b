"""Is this email written by a machine? (RFC 3834 loop protection, bounces, bulk mail.)

An automated email never opens a case, never gets an auto-acknowledgement and never reaches
routing: answering an out-of-office with an acknowledgement is how mail loops start. The reason
is recorded on the case when the email belongs to one.
"""

from __future__ import annotations

import re
from email.message import Message

# Senders that only ever send bounces and notices (RFC 5321 §4.5.5 and common practice).
# A no-reply address cannot be answered, so nothing it sends is a customer contact.
_DAEMONS = re.compile(
    r"^(mailer-daemon|postmaster|post_master|mail-daemon|mailerdaemon|mdaemon"
    r"|no-?reply|do-?not-?reply|bounces?)\b", re.I)
# Subjects of bounces and out-of-office replies from mailers that set none of the headers.
_SUBJECTS = re.compile(
    r"^\s*(undeliver(ed|able)|delivery (status notification|failure|has failed|report)"
    r"|returned mail|mail delivery (failed|failure|system)|failure notice|non.?delivery"
    r"|delivery notification|warning: message .* delayed|message not delivered"
    r"|loop alert|out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|autoreply"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|absence du bureau|fuera de la oficina|risposta automatica)",
    re.IGNORECASE,
)


def automated_reason(message: Message, sender: str | None) -> str | None:
    """Why the message is automated (a short, stable reason), or None for a person's mail."""
    def header(name: str) -> str:
        try:
            return " ".join(str(message.get(name, "") or "").split()).lower()
        except Exception:  # an unparsable header says nothing either way
            return ""

    auto_submitted = header("Auto-Submitted")
    if auto_submitted not in ("", "no"):
        return f"auto-submitted: {auto_submitted.split(';')[0]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        if header(name):
            return name.lower()
    precedence = header("Precedence")
    if precedence in ("bulk", "junk", "auto_reply", "list"):
        return f"precedence: {precedence}"
    if message.get_content_type() == "multipart/report":
        return "delivery report (multipart/report)"
    if any(p.get_content_type() in ("message/delivery-status", "message/disposition-notification")
           for p in message.walk()):
        return "delivery report (message/delivery-status)"
    if header("X-Failed-Recipients"):
        return "x-failed-recipients"
    if header("List-Id") or header("List-Unsubscribe"):
        return "mailing list (list-id)"
    if header("Return-Path") == "<>":
        return "null return-path"
    if sender and _DAEMONS.match(sender):
        return "mailer daemon or no-reply sender"
    if _SUBJECTS.match(header("Subject")):
        return "automated subject"
    return None
