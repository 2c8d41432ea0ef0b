"""The registration entries: one line per channel Switchboard serves, in this order."""

from __future__ import annotations

from shared.channels import chat, email, voice
from shared.channels.registry import ChannelSpec

CHANNELS: tuple[ChannelSpec, ...] = (
    email.CHANNEL,
    chat.CHANNEL,
    voice.CHANNEL,
)
