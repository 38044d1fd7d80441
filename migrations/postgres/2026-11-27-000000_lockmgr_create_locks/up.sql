-- lockmgr: one row per held lock. See lockmgr/src/backend/dialect/ for the
-- statements that read and write it.
--
-- A template: lockmgr fills in each name in braces from the table name it is
-- given (default lockmgr_lock), quoted; `lockmgr migrate --print` shows the
-- result.

-- Fencing tokens: every acquisition takes the next value, so a later holder of
-- any lock always carries a larger `fence` than an earlier one.
CREATE SEQUENCE {fence_seq} AS BIGINT;

CREATE TABLE {table} (
    -- 1 to 255 bytes; the library refuses anything else before it gets here.
    name         TEXT PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 255),
    -- A random token minted for each acquisition: owner-checked release and
    -- renewal compare it, so a holder whose lock expired and was taken over
    -- cannot touch the new holder's row.
    owner        TEXT NOT NULL,
    locked_by    TEXT NOT NULL,
    lock_process BIGINT,
    -- NULL: never expires.
    locked_until TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    fence        BIGINT NOT NULL DEFAULT nextval({fence_seq_text}),
    -- Set by a process that waits for this lock: deleting the row then sends
    -- NOTIFY <the table's channel>, '<name>' (see the trigger below).
    waiters      BOOLEAN NOT NULL DEFAULT false
);

-- Wake waiters in other processes when a lock they wait for goes away, in the
-- same transaction as the delete (delivered at commit). Only rows a waiter has
-- flagged fire it, so an uncontended release stays a plain DELETE.
CREATE FUNCTION {notify_function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify({channel_text}, OLD.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER {release_trigger} AFTER DELETE ON {table}
    FOR EACH ROW WHEN (OLD.waiters) EXECUTE FUNCTION {notify_function}();
