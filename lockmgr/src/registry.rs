//! The registry of `#[locked]` declarations, collected with `inventory`.

use std::fmt;
use std::time::Duration;

/// What a `#[locked]` call does when the lock (or, with `once_per`, the tick) is
/// already taken: the attribute's `on_locked` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnLocked {
    /// Return `Err(E::from(Error::Locked { .. }))` (the default).
    Error,
    /// Return `Ok(())` (or `Ok(None)`) without running the body, and log a `skipped`
    /// event. Implied by `once_per`.
    Skip,
}

impl OnLocked {
    /// The word used in the attribute and by the CLI: `"error"` or `"skip"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OnLocked::Error => "error",
            OnLocked::Skip => "skip",
        }
    }
}

impl fmt::Display for OnLocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The expiry of a `#[locked]` job's lock when `expires` is not given and keep-alive
/// is on (the default): a 60 s lease, renewed every 20 s while the body runs. A job
/// whose process dies is runnable again within a minute; a job that runs for hours
/// keeps its lock. (`get_lock` and `LockMgr` default to [`DEFAULT_EXPIRES`], 600 s, and
/// so does `#[locked(keepalive = false)]` without `expires`.)
///
/// [`DEFAULT_EXPIRES`]: crate::DEFAULT_EXPIRES
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(60);

/// One `#[locked]` function, as declared in the source. Every `#[locked]` function
/// registers one at startup; [`declared_locks`] lists those linked into the running
/// binary. The values are the effective ones, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeclaredLock {
    /// The name template, e.g. `"job:{id}"`.
    pub name: &'static str,
    /// How long the lock lives without a renewal: the lease when `keepalive` is on, the
    /// whole expiry otherwise. `None`: never expires (`expires = 0`).
    pub expires: Option<Duration>,
    /// How long a call waits for the lock; `None`: it does not wait.
    pub wait: Option<Duration>,
    /// The function's path: `module_path!()` and the function name.
    pub function: &'static str,
    /// The source file of the declaration.
    pub file: &'static str,
    /// The line of the declaration.
    pub line: u32,
    /// Whether the lock is renewed in the background while the function runs (default
    /// `true`; `keepalive = false` opts out).
    pub keepalive: bool,
    /// How long the lock is kept at least after it was taken (`min_hold`); `None`: it
    /// is released when the function returns.
    pub min_hold: Option<Duration>,
    /// The tick length of `once_per`: at most one run per tick across all processes;
    /// `None`: no ticks.
    pub once_per: Option<Duration>,
    /// What a call does when the lock is taken.
    pub on_locked: OnLocked,
    /// The template's literal text, as `#[locked]` parsed it (braces unescaped): the
    /// pieces between its placeholders, `n + 1` of them for `n` placeholders (some may
    /// be empty). Matching uses these, so the runtime never parses a template again.
    literals: &'static [&'static str],
}

inventory::collect!(DeclaredLock);

impl DeclaredLock {
    /// A declaration as `#[locked]` starts it: the defaults of the attribute (a
    /// [`DEFAULT_JOB_LEASE`] kept alive, no wait). The generated code sets the rest
    /// through the `const fn`s below, via `lockmgr::__private`.
    pub(crate) const fn declare(
        name: &'static str,
        function: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        DeclaredLock {
            name,
            expires: Some(DEFAULT_JOB_LEASE),
            wait: None,
            function,
            file,
            line,
            keepalive: true,
            min_hold: None,
            once_per: None,
            on_locked: OnLocked::Error,
            literals: &[],
        }
    }

    /// The template's literal pieces, as the macro parsed them (see `literals`).
    pub(crate) const fn with_literals(mut self, literals: &'static [&'static str]) -> Self {
        self.literals = literals;
        self
    }

    /// `expires = …`: zero never expires.
    pub(crate) const fn with_expires(mut self, expires: Duration) -> Self {
        self.expires = nonzero(expires);
        self
    }

    /// `keepalive = false` without `expires`: django-lockmgr's 600 s, not renewed.
    pub(crate) const fn without_keepalive(mut self) -> Self {
        self.keepalive = false;
        self.expires = Some(crate::options::DEFAULT_EXPIRES);
        self
    }

    /// `wait = …`.
    pub(crate) const fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// `min_hold = …`: zero is none.
    pub(crate) const fn with_min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = nonzero(min_hold);
        self
    }

    /// `once_per = …` (which implies `on_locked = "skip"`); zero is refused by the
    /// attribute, and means no ticks here.
    pub(crate) const fn with_once_per(mut self, once_per: Duration) -> Self {
        if !once_per.is_zero() {
            self.once_per = Some(once_per);
            self.on_locked = OnLocked::Skip;
        }
        self
    }

    /// `on_locked = "skip"`.
    pub(crate) const fn skip_when_locked(mut self) -> Self {
        self.on_locked = OnLocked::Skip;
        self
    }

    /// The expiry as a duration; `None`: never expires.
    pub fn expires_duration(&self) -> Option<Duration> {
        self.expires
    }

    /// Whether a lock name could have been rendered from this template: its literal
    /// text in place, each `{placeholder}` standing for one or more characters. The
    /// template's pieces are the ones `#[locked]` parsed: one grammar, the macro's.
    ///
    /// ```
    /// #[lockmgr::locked(name = "sync:{id}:{{v2}}")]
    /// fn sync(id: u64) -> lockmgr::Result<()> {
    ///     Ok(())
    /// }
    /// let decl = lockmgr::declared_locks()
    ///     .into_iter()
    ///     .find(|d| d.name == "sync:{id}:{{v2}}")
    ///     .unwrap();
    /// assert!(decl.matches("sync:42:{v2}"));
    /// assert!(!decl.matches("sync::{v2}"));
    /// assert!(!decl.matches("other:42:{v2}"));
    /// ```
    ///
    /// With `once_per`, a tick's row (`name@tick-start`) matches too.
    pub fn matches(&self, name: &str) -> bool {
        matches_literals(self.literals, name)
            || (self.once_per.is_some()
                && name
                    .rsplit_once('@')
                    .is_some_and(|(base, _)| matches_literals(self.literals, base)))
    }
}

/// `None` for zero: the attribute's way of saying "none" (`expires = 0`).
const fn nonzero(d: Duration) -> Option<Duration> {
    if d.is_zero() {
        None
    } else {
        Some(d)
    }
}

impl fmt::Display for DeclaredLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.function)
    }
}

/// Every `#[locked]` declaration linked into this binary, sorted by template then
/// function.
pub fn declared_locks() -> Vec<&'static DeclaredLock> {
    let mut all: Vec<&'static DeclaredLock> = inventory::iter::<DeclaredLock>.into_iter().collect();
    all.sort_by(|a, b| (a.name, a.function, a.line).cmp(&(b.name, b.function, b.line)));
    all
}

/// The declaration a lock name comes from, if any matches.
pub fn declared_lock_for(name: &str) -> Option<&'static DeclaredLock> {
    declared_locks().into_iter().find(|decl| decl.matches(name))
}

/// Whether `name` is `literals[0]`, then one or more characters, then `literals[1]`,
/// and so on, ending with the last piece. No pieces: a declaration not made by the
/// macro, which matches nothing.
fn matches_literals(literals: &[&str], name: &str) -> bool {
    let Some((first, rest)) = literals.split_first() else {
        return false;
    };
    name.strip_prefix(first)
        .is_some_and(|tail| after_placeholder(rest, tail))
}

/// `name` starts inside a placeholder (one or more characters), followed by `literals`.
fn after_placeholder(literals: &[&str], name: &str) -> bool {
    let Some((next, rest)) = literals.split_first() else {
        return name.is_empty();
    };
    name.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(name.len()))
        .filter(|&i| i > 0)
        .any(|i| {
            name[i..]
                .strip_prefix(next)
                .is_some_and(|tail| after_placeholder(rest, tail))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(literals: &'static [&'static str]) -> DeclaredLock {
        DeclaredLock::declare("t", "m::f", "f.rs", 1).with_literals(literals)
    }

    #[test]
    fn matches_rendered_names() {
        let job = decl(&["job:", ""]); // "job:{id}"
        assert!(job.matches("job:1"));
        assert!(job.matches("job:a:b"));
        assert!(!job.matches("job:"));
        assert!(!job.matches("other:1"));
        let two = decl(&["", "-", ""]); // "{a}-{b}"
        assert!(two.matches("x-y-z"));
        assert!(!two.matches("x-"));
        assert!(!two.matches("-y"));
        let plain = decl(&["plain"]);
        assert!(plain.matches("plain"));
        assert!(!plain.matches("plain2"));
        assert!(decl(&["b{r}ace"]).matches("b{r}ace"));
        assert!(decl(&["é:", ""]).matches("é:ü"));
        assert!(!decl(&[]).matches("anything"));
    }
}
