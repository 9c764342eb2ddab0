-- Alarm deliveries not yet done, one row per (alarm, channel). A raise writes its rows in
-- its own transaction, so a committed alarm's delivery survives a crash or restart of the
-- gateway that raised it. A gateway works on a row while it holds the row's lease
-- (`lease_until`, `lease_token`); when a gateway dies mid-delivery the lease runs out and
-- any gateway resumes the row from `attempts` (at-least-once delivery). The row goes when
-- the channel has the alarm or gives up on it. Times are Unix milliseconds.
CREATE TABLE alarm_deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    container_id INTEGER NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    customer_id  INTEGER NOT NULL,
    channel      TEXT    NOT NULL,
    -- The alarm itself (JSON): max_alarms may prune the alarms row before delivery.
    alarm        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    lease_token  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alarm_deliveries_due ON alarm_deliveries(due_at);
CREATE INDEX alarm_deliveries_container ON alarm_deliveries(container_id);
