//! Name templates: `"job:{id}"` split into literal text and `{param}` placeholders.
//!
//! `{{` and `}}` are literal braces. The literal text may hold `A-Z a-z 0-9 _ . : / @ -`
//! (and the escaped braces); a placeholder renders whatever its parameter displays.
//! Stable Rust cannot point inside a string literal, so every error spans the literal.

use syn::LitStr;

use crate::errors::Errors;

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Text used as is (braces already unescaped).
    Literal(String),
    /// `{ident}`: the parameter of that name, by its `Display`.
    Placeholder(String),
}

/// A parsed name template.
pub(crate) struct Template {
    /// The string literal it came from (for spans and the registry).
    pub(crate) lit: LitStr,
    /// Its pieces, in order.
    pub(crate) parts: Vec<Part>,
}

impl Template {
    /// The placeholders' names, in order of appearance (repeats included).
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Placeholder(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The literal text between the placeholders, braces unescaped: `n + 1` pieces for
    /// `n` placeholders (empty where two placeholders or an end meet). The runtime
    /// matches names against these (one grammar: this one).
    pub(crate) fn literals(&self) -> Vec<String> {
        let mut literals = vec![String::new()];
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    if let Some(last) = literals.last_mut() {
                        last.push_str(text);
                    }
                }
                Part::Placeholder(_) => literals.push(String::new()),
            }
        }
        literals
    }

    /// How many bytes of every rendered name the literal text takes (the runtime
    /// checks it against its limit at compile time).
    pub(crate) fn fixed_len(&self) -> usize {
        self.literals().iter().map(String::len).sum()
    }

    /// The template as a `format_args!` string: literal braces escaped again, each
    /// placeholder a positional `{}` (its argument given in the same order).
    pub(crate) fn format_string(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.replace('{', "{{").replace('}', "}}"),
                Part::Placeholder(_) => "{}".to_string(),
            })
            .collect()
    }
}

/// Whether `c` may appear in the literal part of a name.
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '@' | '-')
}

/// Parse the template in `lit`, recording every problem in `errors`. The template is
/// returned even then (with the placeholders that could be read), so that the checks
/// against the function still run and report their own errors.
pub(crate) fn parse(lit: &LitStr, errors: &mut Errors) -> Template {
    let text = lit.value();
    let mut problems: Vec<String> = Vec::new();
    let parts = split(&text, &mut problems);
    if text.is_empty() {
        problems.push("lock name cannot be empty".to_string());
    }
    let bad: Vec<char> = parts
        .iter()
        .filter_map(|part| match part {
            Part::Literal(text) => Some(
                text.chars()
                    .filter(|&c| !allowed(c) && c != '{' && c != '}'),
            ),
            Part::Placeholder(_) => None,
        })
        .flatten()
        .fold(Vec::new(), |mut seen, c| {
            if !seen.contains(&c) {
                seen.push(c);
            }
            seen
        });
    if !bad.is_empty() {
        let shown = bad
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (noun, verb) = if bad.len() == 1 {
            ("character", "is")
        } else {
            ("characters", "are")
        };
        problems.push(format!(
            "{noun} {shown} {verb} not allowed in a lock name: use A-Z a-z 0-9 _ . : / @ -, \
             `{{{{` `}}}}` for braces, or a {{param}} placeholder"
        ));
    }
    for problem in problems {
        errors.push(syn::Error::new(lit.span(), problem));
    }
    Template {
        lit: lit.clone(),
        parts,
    }
}

/// Split `text` into parts, describing each syntax problem in `problems`.
fn split(text: &str, problems: &mut Vec<String>) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut inner = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    problems.push(format!(
                        "unbalanced braces in lock name: the `{{` at byte {at} is never closed; \
                         write `{{{{` for a literal brace"
                    ));
                    break;
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                if inner.is_empty() {
                    problems.push(
                        "empty placeholder `{}` in lock name: name a parameter, like {id}"
                            .to_string(),
                    );
                } else if inner.contains('{') {
                    problems.push(format!(
                        "unbalanced braces in lock name: `{{` inside the placeholder `{{{inner}}}`"
                    ));
                } else if !is_placeholder(&inner) {
                    problems.push(format!(
                        "invalid placeholder `{{{inner}}}` in lock name: a placeholder is a \
                         parameter name, `self` or `self.field`, rendered with its Display \
                         (no format spec)"
                    ));
                }
                parts.push(Part::Placeholder(inner));
            }
            '}' => problems.push(format!(
                "unbalanced braces in lock name: the `}}` at byte {at} has no opening `{{`; \
                 write `}}}}` for a literal brace"
            )),
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    parts
}

/// Whether `s` can be a placeholder: a parameter name, `self`, or `self.field` (a named
/// or tuple field).
fn is_placeholder(s: &str) -> bool {
    match s.strip_prefix("self.") {
        Some(field) => {
            is_identifier(field) || (!field.is_empty() && field.bytes().all(|b| b.is_ascii_digit()))
        }
        None => s == "self" || is_identifier(s),
    }
}

/// Whether `s` is a plain Rust identifier (what a parameter name can be).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && s != "_"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Part>, String> {
        let lit = LitStr::new(text, proc_macro2::Span::call_site());
        let mut errors = Errors::default();
        let parsed = parse(&lit, &mut errors);
        match errors.finish() {
            Ok(()) => Ok(parsed.parts),
            Err(err) => Err(err
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    fn lit(s: &str) -> Part {
        Part::Literal(s.to_string())
    }

    fn ph(s: &str) -> Part {
        Part::Placeholder(s.to_string())
    }

    #[test]
    fn splits_literals_and_placeholders() {
        assert_eq!(parse_str("job").unwrap(), vec![lit("job")]);
        assert_eq!(parse_str("job:{id}").unwrap(), vec![lit("job:"), ph("id")]);
        assert_eq!(
            parse_str("{a}-{b}/x").unwrap(),
            vec![ph("a"), lit("-"), ph("b"), lit("/x")]
        );
        assert_eq!(
            parse_str("b{{r}}:{x}").unwrap(),
            vec![lit("b{r}:"), ph("x")]
        );
    }

    #[test]
    fn literals_are_the_text_between_placeholders() {
        let lit = LitStr::new("{a}{b}:{{x}}-{c}", proc_macro2::Span::call_site());
        let template = parse(&lit, &mut Errors::default());
        assert_eq!(template.literals(), ["", "", ":{x}-", ""]);
        assert_eq!(template.fixed_len(), 5);
    }

    #[test]
    fn format_string_escapes_braces_again() {
        let lit = LitStr::new("a{{b}}:{x}-{y}", proc_macro2::Span::call_site());
        let template = parse(&lit, &mut Errors::default());
        assert_eq!(template.format_string(), "a{{b}}:{}-{}");
        assert_eq!(template.placeholders().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn reports_each_problem() {
        let err = |s: &str| parse_str(s).unwrap_err();
        assert!(err("").contains("cannot be empty"));
        assert!(err("job:{id").contains("never closed"));
        assert!(err("job:}").contains("no opening"));
        assert!(err("job:{}").contains("empty placeholder"));
        assert!(err("job:{id:?}").contains("invalid placeholder `{id:?}`"));
        assert!(err("job {id}").contains("' ' is not allowed"));
        assert!(err("a b#c d").contains("characters ' ', '#' are not allowed"));
        // A too-long template is the runtime's to refuse (a const assertion in the
        // expansion, against lockmgr::MAX_NAME_BYTES): the parser has no limit.
        assert!(parse_str(&"x".repeat(256)).is_ok());
        // Both problems of one literal are reported.
        let both = err("a b:{");
        assert!(
            both.contains("never closed") && both.contains("not allowed"),
            "{both}"
        );
    }

    #[test]
    fn methods_may_name_self_and_its_fields() {
        assert_eq!(parse_str("{self}").unwrap(), vec![ph("self")]);
        assert_eq!(
            parse_str("job:{self.id}/{self.0}").unwrap(),
            vec![lit("job:"), ph("self.id"), lit("/"), ph("self.0")]
        );
        assert!(parse_str("{self.}")
            .unwrap_err()
            .contains("invalid placeholder"));
        assert!(parse_str("{self.a.b}")
            .unwrap_err()
            .contains("invalid placeholder"));
    }

    #[test]
    fn placeholders_may_render_anything() {
        assert!(parse_str("{any}").is_ok());
        assert!(parse_str("A-Z_a.z:0/9@x-{p}").is_ok());
        assert!(parse_str(&"x".repeat(255)).is_ok());
    }
}
