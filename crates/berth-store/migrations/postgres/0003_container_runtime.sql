-- Observed state (issue: containers must really run): what the agent last saw of each
-- container, beside the desired row in `containers`. One row per container, written only by
-- the agent; `last_quota_alarm` is the quota-alarm gate (at most one per `alarm_freq`, kept
-- here so it survives an agent restart); `oom_kills` is the OOM kill counter of the
-- container's cgroup as last seen, so kills while no agent watched still raise an alarm. Kept column-for-column identical to ../sqlite.
CREATE TABLE container_runtime (
    container_id        BIGINT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
    state               TEXT   NOT NULL,
    pid                 BIGINT,
    started_at          BIGINT,
    observed_generation BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT,
    memory_bytes        BIGINT NOT NULL DEFAULT 0,
    disk_bytes          BIGINT NOT NULL DEFAULT 0,
    last_quota_alarm    BIGINT NOT NULL DEFAULT 0,
    oom_kills           BIGINT NOT NULL DEFAULT 0,
    updated_at          BIGINT NOT NULL
);
