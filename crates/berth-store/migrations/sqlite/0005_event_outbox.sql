-- Events of changes made outside `berth serve` (the `berth admin` commands run in their own
-- process, out of reach of the gateway's in-process bus). Each is written in its change's
-- own transaction; `berth serve` polls the table and rebroadcasts what is new. AUTOINCREMENT
-- so that ids never come back once old rows are pruned: "after the last id seen" stays right.
CREATE TABLE event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
