-- intake: mail set aside as automated that belongs to no case. Nothing a machine-looking
-- message says is lost: its reason, sender, subject and (redacted) text stay here until an
-- operator releases it (`switchboard intake suppressed release`), which re-submits it as a
-- person's email.
CREATE TABLE intake_suppressed (
    suppression_id   text        PRIMARY KEY,  -- uuid5 of the inbound event: a redelivery is absorbed
    message_key      text,                     -- "email:<Message-ID>" of the message, if it had one
    mailbox          text        NOT NULL,
    sender           text,
    sender_name      text,
    subject          text,
    reason           text        NOT NULL,
    related_keys     text[]      NOT NULL DEFAULT '{}',  -- In-Reply-To / References keys
    text             text        NOT NULL DEFAULT '',    -- the full text, redacted
    received_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    released_at      timestamptz,
    released_by      text
);
CREATE INDEX intake_suppressed_recorded_idx ON intake_suppressed (recorded_at);
CREATE INDEX intake_suppressed_message_idx ON intake_suppressed (message_key);
