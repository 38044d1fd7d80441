//! What [`LockStore::set_lock`](crate::LockStore::set_lock) reports.

use std::fmt;

use crate::model::Lock;

/// What `set_lock` did with one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetLockAction {
    /// The lock was created (or an expired one taken over).
    Create,
    /// An existing lock was renewed.
    Extend,
    /// Nothing was done: a free name without `create`, or a held name without `renew`.
    Skip,
}

impl SetLockAction {
    /// django-lockmgr's word for it: `create`, `extend` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            SetLockAction::Create => "create",
            SetLockAction::Extend => "extend",
            SetLockAction::Skip => "skip",
        }
    }
}

impl fmt::Display for SetLockAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One name of a `set_lock` call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SetLockStatus {
    /// The lock name.
    pub name: String,
    /// Whether a live lock existed before the call.
    pub was_locked: bool,
    /// What was done.
    pub action: SetLockAction,
    /// The lock as it stands after the call, if it is held.
    pub lock: Option<Lock>,
}

impl SetLockStatus {
    pub(crate) fn new(
        name: &str,
        was_locked: bool,
        action: SetLockAction,
        lock: Option<Lock>,
    ) -> Self {
        SetLockStatus {
            name: name.to_string(),
            was_locked,
            action,
            lock,
        }
    }

    /// Whether the lock is held after the call.
    pub fn now_locked(&self) -> bool {
        self.lock.is_some()
    }
}

/// The outcome of a `set_lock` call: counts as django-lockmgr reports them, and a
/// status per name in the order given.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SetLockReport {
    /// Locks created.
    pub created: usize,
    /// Existing locks renewed.
    pub renewed: usize,
    /// Free names not created (no `create`).
    pub skip_create: usize,
    /// Held names not renewed (no `renew`).
    pub skip_renew: usize,
    /// One entry per distinct name, in the order given.
    pub statuses: Vec<SetLockStatus>,
}

impl SetLockReport {
    pub(crate) fn from_statuses(statuses: Vec<SetLockStatus>) -> Self {
        let count =
            |pred: &dyn Fn(&SetLockStatus) -> bool| statuses.iter().filter(|s| pred(s)).count();
        SetLockReport {
            created: count(&|s| s.action == SetLockAction::Create),
            renewed: count(&|s| s.action == SetLockAction::Extend),
            skip_create: count(&|s| s.action == SetLockAction::Skip && !s.was_locked),
            skip_renew: count(&|s| s.action == SetLockAction::Skip && s.was_locked),
            statuses,
        }
    }
}
