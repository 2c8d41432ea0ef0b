-- The router's floor in memory (issue 9): the stage a waiting case is queued under, and the
-- leadership of the one router that decides (a second one stands by; see docs/architecture.md).
ALTER TABLE router_case ADD COLUMN stage_skill text;

CREATE TABLE router_leader (
    id      integer     PRIMARY KEY CHECK (id = 1),
    -- bumped by each router that takes over; every router transaction checks the one it holds
    epoch   bigint      NOT NULL,
    holder  text        NOT NULL,
    since   timestamptz NOT NULL
);
INSERT INTO router_leader (id, epoch, holder, since) VALUES (1, 0, '', now());
