DROP TRIGGER IF EXISTS lockmgr_lock_fence;
DROP TABLE IF EXISTS lockmgr_lock;
DROP TABLE IF EXISTS lockmgr_fence;
