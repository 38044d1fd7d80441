DROP TABLE lockmgr_lock;
DROP SEQUENCE lockmgr_lock_fence_seq;
