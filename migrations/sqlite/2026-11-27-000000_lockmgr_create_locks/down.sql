DROP TRIGGER {fence_update_trigger};
DROP TRIGGER {fence_insert_trigger};
DROP TABLE {fence_table};
DROP TABLE {table};
