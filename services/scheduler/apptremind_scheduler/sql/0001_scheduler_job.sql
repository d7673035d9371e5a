-- scheduler-service schema: one durable row per delayed job. See docs/adr/0009-scheduler-claim-emit-complete.md.
--
-- A job moves scheduled -> running (claimed under a lease) -> completed, or back to scheduled after a failed
-- publish or an expired lease, or to failed after the last attempt; only a scheduled job can be cancelled.
-- A cancel that arrives before its request leaves a tombstone (state cancelled, topic ''), so the later
-- request finds the key taken and does not bring the job back.

CREATE TABLE job (
    job_id           uuid PRIMARY KEY,
    business_id      uuid        NOT NULL,
    idempotency_key  text        NOT NULL,
    due_at           timestamptz NOT NULL,
    -- The declared topic the due event goes to; '' only on a tombstone.
    topic            text        NOT NULL,
    -- The Kafka partition key of the due event.
    key              text        NOT NULL,
    -- The caller's google.protobuf.Any, returned untouched in the due event.
    payload_type_url text        NOT NULL DEFAULT '',
    payload          bytea       NOT NULL DEFAULT '',
    state            text        NOT NULL DEFAULT 'scheduled'
        CHECK (state IN ('scheduled', 'running', 'completed', 'cancelled', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text        NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_idempotency UNIQUE (business_id, idempotency_key),
    CONSTRAINT job_lease CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The workers' due scan: the next scheduled jobs in due order, nothing else in the index.
CREATE INDEX job_due ON job (next_attempt_at) WHERE state = 'scheduled';
-- Reclaiming jobs whose worker died: running jobs by lease expiry.
CREATE INDEX job_lease_expiry ON job (lease_expires_at) WHERE state = 'running';
-- The pruner's scan: finished jobs by age.
CREATE INDEX job_finished ON job (updated_at) WHERE state IN ('completed', 'cancelled');
-- List: a tenant's jobs in creation order (job_id is a UUIDv7).
CREATE INDEX job_by_business ON job (business_id, job_id);
