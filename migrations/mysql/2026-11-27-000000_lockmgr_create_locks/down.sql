DROP TRIGGER IF EXISTS {fence_trigger};
DROP TABLE IF EXISTS {table};
DROP TABLE IF EXISTS {fence_table};
