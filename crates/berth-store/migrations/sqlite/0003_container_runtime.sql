-- Observed state (issue: containers must really run): what the agent last saw of each
-- container, beside the desired row in `containers`. One row per container, written only by
-- the agent; `last_quota_alarm` is the quota-alarm gate (at most one per `alarm_freq`, kept
-- here so it survives an agent restart); `oom_kills` is the OOM kill counter of the
-- container's cgroup as last seen, so kills while no agent watched still raise an alarm. Kept column-for-column identical to ../postgres.
CREATE TABLE container_runtime (
    container_id        INTEGER PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
    state               TEXT    NOT NULL,
    pid                 INTEGER,
    started_at          INTEGER,
    observed_generation INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    memory_bytes        INTEGER NOT NULL DEFAULT 0,
    disk_bytes          INTEGER NOT NULL DEFAULT 0,
    last_quota_alarm    INTEGER NOT NULL DEFAULT 0,
    oom_kills           INTEGER NOT NULL DEFAULT 0,
    updated_at          INTEGER NOT NULL
);
