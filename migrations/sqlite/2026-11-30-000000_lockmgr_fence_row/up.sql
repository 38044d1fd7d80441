-- lockmgr: the last fence handed out moves from its one-row table into a row
-- of the lock table itself, the fence row, whose name no lock can have (it
-- starts with a control character, which lock names never contain). An
-- acquisition then writes one page of the database instead of two: with a
-- table of a few rows the lock row and the fence row share a page, and each
-- page written is a frame of the write-ahead log. That second frame was about
-- a sixth of an acquisition's time.
--
-- The fence row never expires (locked_until is NULL), so expired-lock cleanup
-- never removes it; listing and resetting the locks skip it. It starts from the
-- counter, and never below a fence a lock row already has.
INSERT INTO {table} (name, owner, locked_by, lock_process, locked_until, created_at, updated_at, fence)
SELECT {fence_row}, '', 'lockmgr', NULL, NULL,
       strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'),
       max(coalesce((SELECT value FROM {fence_table} WHERE id = 1), 0),
           coalesce((SELECT max(fence) FROM {table}), 0));

DROP TRIGGER {fence_insert_trigger};
DROP TRIGGER {fence_update_trigger};
DROP TABLE {fence_table};

-- The acquire statement reads the fence row's `fence + 1`; these triggers move
-- it forward whenever a lock row takes a new fence. SQLite runs one writer at a
-- time, so every acquisition gets a fence larger than every earlier one.
CREATE TRIGGER {fence_insert_trigger} AFTER INSERT ON {table_bare}
WHEN NEW.name <> {fence_row}
BEGIN
    UPDATE {table_bare} SET fence = NEW.fence WHERE name = {fence_row} AND fence < NEW.fence;
END;

CREATE TRIGGER {fence_update_trigger} AFTER UPDATE OF fence ON {table_bare}
WHEN NEW.name <> {fence_row}
BEGIN
    UPDATE {table_bare} SET fence = NEW.fence WHERE name = {fence_row} AND fence < NEW.fence;
END;
