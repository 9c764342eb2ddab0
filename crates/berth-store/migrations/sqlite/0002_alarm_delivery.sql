-- Alarm delivery (issue 3): the time of the last delivery to the container's channels, the
-- gate every gateway updates atomically to honour `alarm_freq`, and the signed webhook.
ALTER TABLE containers ADD COLUMN last_alarm_delivery INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN webhook_url TEXT;
ALTER TABLE containers ADD COLUMN webhook_secret TEXT;
