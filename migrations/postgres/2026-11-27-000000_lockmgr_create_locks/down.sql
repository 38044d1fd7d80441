DROP TRIGGER {release_trigger} ON {table};
DROP FUNCTION {notify_function}();
DROP TABLE {table};
DROP SEQUENCE {fence_seq};
