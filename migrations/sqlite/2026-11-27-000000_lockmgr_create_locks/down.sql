DROP TRIGGER lockmgr_lock_fence_update;
DROP TRIGGER lockmgr_lock_fence_insert;
DROP TABLE lockmgr_fence;
DROP TABLE lockmgr_lock;
