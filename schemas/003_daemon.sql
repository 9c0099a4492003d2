-- 003_daemon.sql: the daemon's job queue (docs/daemon.md). A job queued by
-- `kiln run submit` has origin 'run' and is run by `kiln daemon`; rows made
-- by a `kiln train` process for itself keep origin NULL and the daemon never
-- touches them. `request` holds a pause or cancel asked while the job runs,
-- so that it is applied even if the daemon dies before the job stops.
ALTER TABLE jobs ADD COLUMN origin TEXT CHECK (origin IN ('run'));
ALTER TABLE jobs ADD COLUMN request TEXT CHECK (request IN ('pause', 'cancel'));
-- the scheduler's order: highest priority, then oldest
CREATE INDEX jobs_queue ON jobs(state, priority DESC, id);
