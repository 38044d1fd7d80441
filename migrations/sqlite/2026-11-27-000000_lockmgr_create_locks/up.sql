-- lockmgr: one row per held lock. See lockmgr/src/backend/dialect/ for the
-- statements that read and write it.
--
-- A template: lockmgr fills in each name in braces from the table name it is
-- given (default lockmgr_lock), quoted; `lockmgr migrate --print` shows the
-- result.
--
-- Times are UTC text in one fixed format, 'YYYY-MM-DD HH:MM:SS.SSS', as
-- produced by strftime('%Y-%m-%d %H:%M:%f', 'now'), so that comparing two of
-- them as text compares them as times.
CREATE TABLE {table} (
    name         TEXT NOT NULL PRIMARY KEY
                 CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 255),
    owner        TEXT NOT NULL,
    locked_by    TEXT NOT NULL,
    lock_process BIGINT,
    locked_until TEXT,  -- NULL: never expires
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    fence        BIGINT NOT NULL
) WITHOUT ROWID;

-- SQLite has no sequences: the last fence handed out lives here, and the
-- triggers below move it forward whenever a row takes a new fence. The
-- acquire statement reads `value + 1`; as SQLite runs one writer at a time,
-- every acquisition gets a fence larger than every earlier one.
CREATE TABLE {fence_table} (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO {fence_table} (id, value) VALUES (1, 0);

CREATE TRIGGER {fence_insert_trigger} AFTER INSERT ON {table_bare}
BEGIN
    UPDATE {fence_table_bare} SET value = NEW.fence WHERE id = 1 AND value < NEW.fence;
END;

CREATE TRIGGER {fence_update_trigger} AFTER UPDATE OF fence ON {table_bare}
BEGIN
    UPDATE {fence_table_bare} SET value = NEW.fence WHERE id = 1 AND value < NEW.fence;
END;
