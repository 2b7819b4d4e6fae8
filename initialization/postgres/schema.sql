-- data-backup-manager catalog schema (PostgreSQL 13+).
--
-- The PRD's three tables (backup_jobs, backup_schedules, restore_points) with the PRD's
-- columns and types, plus what the service needs: restore_jobs, audit_log and
-- schema_version. The repository stays the source of truth: `data-backup-manager catalog
-- rebuild` repopulates backup_jobs from the repository's snapshots.
--
-- Idempotent: every statement is IF NOT EXISTS / ON CONFLICT DO NOTHING, so applying it again
-- changes nothing. The program applies it at start inside one transaction holding
-- pg_advisory_xact_lock(7305166102113296641) so that instances starting together do not race.
-- Later migrations add a row to schema_version and guard themselves with it.
-- All timestamps are timestamptz (stored as UTC).

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL
);

CREATE TABLE IF NOT EXISTS backup_schedules (
    -- PRD BackupSchedule
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    cron_expression text NOT NULL,
    backup_type     text NOT NULL DEFAULT 'incremental'
                    CHECK (backup_type IN ('full', 'incremental', 'differential')),
    targets         text[] NOT NULL DEFAULT '{}',
    retention_days  integer,
    enabled         boolean NOT NULL DEFAULT true,
    last_run        timestamptz,
    next_run        timestamptz,
    created_by      text NOT NULL DEFAULT '',
    -- additions
    timezone        text NOT NULL DEFAULT 'UTC',
    keep_policy     jsonb NOT NULL DEFAULT '{}',
    action          text NOT NULL DEFAULT 'backup' CHECK (action IN ('backup', 'restore_drill')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS backup_jobs (
    -- PRD BackupJob
    id                uuid PRIMARY KEY,
    type              text NOT NULL CHECK (type IN ('full', 'incremental', 'differential')),
    target            text NOT NULL,            -- postgres | files | scenario | minio
    target_identifier text NOT NULL,            -- the spec or config name, e.g. files:/srv/data
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    started_at        timestamptz,
    completed_at      timestamptz,
    size_bytes        bigint,
    compression_ratio double precision,
    storage_path      text,                     -- snapshot id in the repository
    checksum          text,                     -- snapshot root tree id (BLAKE3)
    retention_until   timestamptz,
    metadata          jsonb NOT NULL DEFAULT '{}',
    -- additions
    created_at        timestamptz NOT NULL DEFAULT now(),
    not_before        timestamptz,              -- retry backoff
    retry_count       integer NOT NULL DEFAULT 0,
    max_retries       integer NOT NULL DEFAULT 0,
    error             text,
    schedule_id       uuid REFERENCES backup_schedules (id) ON DELETE SET NULL,
    requested_by      text NOT NULL DEFAULT '',
    owner             text,                     -- worker holding a running job
    heartbeat_at      timestamptz
);
CREATE INDEX IF NOT EXISTS backup_jobs_pending ON backup_jobs (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS backup_jobs_target ON backup_jobs (target_identifier, created_at);
CREATE INDEX IF NOT EXISTS backup_jobs_storage_path ON backup_jobs (storage_path);

CREATE TABLE IF NOT EXISTS restore_points (
    -- PRD RestorePoint
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    backup_job_ids    uuid[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    description       text,
    verified          boolean NOT NULL DEFAULT false,
    verification_date timestamptz,
    -- additions
    snapshot_ids      text[] NOT NULL DEFAULT '{}',
    created_by        text NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS restore_jobs (
    id               uuid PRIMARY KEY,
    restore_point_id uuid REFERENCES restore_points (id) ON DELETE SET NULL,
    backup_job_id    uuid REFERENCES backup_jobs (id) ON DELETE SET NULL,
    snapshot_ids     text[] NOT NULL DEFAULT '{}',
    targets          text[] NOT NULL DEFAULT '{}',
    destination      text,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    drill            boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    error            text,
    requested_by     text NOT NULL DEFAULT '',
    metadata         jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,                      -- user or API token name
    action  text NOT NULL,                      -- backup, restore, verify, schedule.update, ...
    object  text NOT NULL,                      -- job / schedule / restore point / snapshot id
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);

INSERT INTO schema_version (version, description)
VALUES (1, 'PRD tables, restore_jobs, audit_log')
ON CONFLICT (version) DO NOTHING;
