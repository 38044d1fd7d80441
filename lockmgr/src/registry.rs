//! The registry of `#[locked]` declarations, collected with `inventory`.

use std::fmt;
use std::time::Duration;

/// One `#[locked]` function, as declared in the source. Every `#[locked]` function
/// registers one at startup; [`declared_locks`] lists those linked into the running
/// binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeclaredLock {
    /// The name template, e.g. `"job:{id}"`.
    pub name: &'static str,
    /// Expiry in seconds; 0: never expires.
    pub expires: u64,
    /// How long a call waits for the lock, in seconds; `None`: it does not wait.
    pub wait: Option<u64>,
    /// The function's path: `module_path!()` and the function name.
    pub function: &'static str,
    /// The source file of the declaration.
    pub file: &'static str,
    /// The line of the declaration.
    pub line: u32,
    /// Whether the lock is renewed in the background while the function runs
    /// (`keepalive = true`).
    pub keepalive: bool,
    /// Seconds the lock is kept at least after it was taken (`min_hold`); `None`: it
    /// is released when the function returns.
    pub min_hold: Option<u64>,
}

inventory::collect!(DeclaredLock);

impl DeclaredLock {
    /// A declaration; used by the code `#[locked]` generates.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        expires: u64,
        wait: Option<u64>,
        function: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        DeclaredLock {
            name,
            expires,
            wait,
            function,
            file,
            line,
            keepalive: false,
            min_hold: None,
        }
    }

    /// The same declaration with `keepalive` and `min_hold`; used by the code
    /// `#[locked]` generates.
    #[doc(hidden)]
    pub const fn with_liveness(mut self, keepalive: bool, min_hold: Option<u64>) -> Self {
        self.keepalive = keepalive;
        self.min_hold = min_hold;
        self
    }

    /// The expiry as a duration; `None`: never expires.
    pub fn expires_duration(&self) -> Option<Duration> {
        (self.expires > 0).then(|| Duration::from_secs(self.expires))
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
    pub fn matches(&self, name: &str) -> bool {
        matches_parts(&template_parts(self.name), name)
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
