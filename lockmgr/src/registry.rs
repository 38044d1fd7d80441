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
}

inventory::collect!(DeclaredLock);

impl DeclaredLock {
    /// A declaration with whole-second settings (`expires` 0: never expires), as the
    /// attribute's defaults otherwise: no keep-alive, no `min_hold`, no `once_per`,
    /// `on_locked = "error"`. For registering by hand, as tests do.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        expires: u64,
        wait: Option<u64>,
        function: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        let mut decl = DeclaredLock::declare(name, function, file, line);
        decl.expires = nonzero(Duration::from_secs(expires));
        decl.wait = match wait {
            Some(secs) => Some(Duration::from_secs(secs)),
            None => None,
        };
        decl.keepalive = false;
        decl
    }

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
        }
    }

    /// `expires = …`: zero never expires.
    pub(crate) const fn with_expires(mut self, expires: Duration) -> Self {
        self.expires = nonzero(expires);
        self
    }

    /// `keepalive = false` without `expires`: the seed's 600 s, not renewed.
    pub(crate) const fn without_keepalive(mut self) -> Self {
        self.keepalive = false;
        self.expires = Some(crate::builder::DEFAULT_EXPIRES);
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

    /// Whether a lock name could have been rendered from this template: literal parts
    /// equal, each `{placeholder}` standing for one or more characters.
    ///
    /// ```
    /// let decl = lockmgr::DeclaredLock::new("job:{id}", 60, None, "app::sync", "src/lib.rs", 1);
    /// assert!(decl.matches("job:42"));
    /// assert!(!decl.matches("job:"));
    /// assert!(!decl.matches("other:42"));
    /// ```
    ///
    /// With `once_per`, a tick's row (`name@tick-start`) matches too.
    pub fn matches(&self, name: &str) -> bool {
        let parts = template_parts(self.name);
        matches_parts(&parts, name)
            || (self.once_per.is_some()
                && name
                    .rsplit_once('@')
                    .is_some_and(|(base, _)| matches_parts(&parts, base)))
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

#[derive(Debug, PartialEq)]
enum Part {
    Literal(String),
    Placeholder,
}

/// Split a template into literal text (with `{{`/`}}` unescaped) and placeholders.
fn template_parts(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Placeholder);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    parts
}

fn matches_parts(parts: &[Part], name: &str) -> bool {
    match parts.split_first() {
        None => name.is_empty(),
        Some((Part::Literal(lit), rest)) => name
            .strip_prefix(lit.as_str())
            .is_some_and(|tail| matches_parts(rest, tail)),
        Some((Part::Placeholder, rest)) => name
            .char_indices()
            .skip(1)
            .map(|(i, _)| i)
            .chain(std::iter::once(name.len()))
            .filter(|&i| i > 0)
            .any(|i| matches_parts(rest, &name[i..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &'static str) -> DeclaredLock {
        DeclaredLock::new(name, 600, None, "m::f", "f.rs", 1)
    }

    #[test]
    fn splits_templates() {
        assert_eq!(
            template_parts("a{{b}}:{x}-{y}"),
            vec![
                Part::Literal("a{b}:".into()),
                Part::Placeholder,
                Part::Literal("-".into()),
                Part::Placeholder
            ]
        );
    }

    #[test]
    fn matches_rendered_names() {
        assert!(decl("job:{id}").matches("job:1"));
        assert!(decl("job:{id}").matches("job:a:b"));
        assert!(decl("{a}-{b}").matches("x-y-z"));
        assert!(!decl("{a}-{b}").matches("x-"));
        assert!(decl("plain").matches("plain"));
        assert!(!decl("plain").matches("plain2"));
        assert!(decl("b{{r}}ace").matches("b{r}ace"));
        assert!(decl("é:{x}").matches("é:ü"));
    }
}
