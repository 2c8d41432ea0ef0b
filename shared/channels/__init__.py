"""The channels Switchboard serves, each described in one module of this package.

A channel is one module here (`email.py`, `chat.py`, `voice.py`) holding its inbound topic, the
contracts front-ends publish on it, the extractor that turns one of its events into a contact,
how its contacts find their case (threading), and its defaults for agents and routing; and one
entry in `entries.py`. Everything else reads `registry`: the contracts (which channel names are
valid), topic provisioning and the AsyncAPI export, intake's core, the router's floor and
policy, the SLA settings and the console.

It lives in shared/ so that intake and the router read the same channels without importing
each other.
"""
