DROP TRIGGER lockmgr_lock_release ON lockmgr_lock;
DROP FUNCTION lockmgr_notify_release();
DROP TABLE lockmgr_lock;
DROP SEQUENCE lockmgr_lock_fence_seq;
