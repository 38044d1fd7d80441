//! Parsing of the attribute's arguments: `#[locked(name = "…", expires = 60, …)]`.
//!
//! Parsing is lenient on purpose: every `key = value` pair is read first, then each is
//! checked on its own, so that one attribute's mistakes are all reported together.
//! Only a syntax error (a missing `=`, a stray token) stops the parse.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ExprPath, Ident, Lit, LitStr, Token};

use crate::duration::{self, DurationArg};

use crate::errors::Errors;

/// The keys `#[locked]` understands, in the order its messages list them.
const KEYS: &[&str] = &[
    "name",
    "expires",
    "wait",
    "store",
    "guard",
    "keepalive",
    "min_hold",
    "once_per",
    "on_locked",
];

/// The arguments of one `#[locked(...)]`, each as given (or absent).
#[derive(Default)]
pub(crate) struct LockedArgs {
    /// `name = "job:{id}"`: the name template.
    pub(crate) name: Option<LitStr>,
    /// `expires = DURATION`, zero = never.
    pub(crate) expires: Option<DurationArg>,
    /// `wait = DURATION`.
    pub(crate) wait: Option<DurationArg>,
    /// `store = EXPR`: an expression giving a `&LockStore`.
    pub(crate) store: Option<Expr>,
    /// `guard = IDENT`: binds `&mut LockGuard` in the body.
    pub(crate) guard: Option<Ident>,
    /// `keepalive = BOOL`: renew the lock in the background while the body runs.
    pub(crate) keepalive: Option<bool>,
    /// `min_hold = DURATION`: keep the lock at least this long after acquiring it.
    pub(crate) min_hold: Option<DurationArg>,
    /// `once_per = DURATION`: at most one run per tick across all processes.
    pub(crate) once_per: Option<DurationArg>,
    /// `on_locked = "skip" | "error"`, with the key (for spans).
    pub(crate) on_locked: Option<(Ident, OnLocked)>,
    /// The key of every argument given, for errors about combinations.
    pub(crate) keys: Vec<Ident>,
}

/// What a call does when the lock is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLocked {
    Error,
    Skip,
}

impl LockedArgs {
    /// The key `name` as written, if it was given.
    pub(crate) fn key(&self, name: &str) -> Option<&Ident> {
        self.keys.iter().find(|key| key.unraw() == name)
    }
}

/// One `key = value` pair, before any check.
struct RawArg {
    key: Ident,
    value: Expr,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // Any word is read as a key (also keywords such as `type`), so that an unknown
        // key gets the "unknown argument" message rather than a parse error.
        let key = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(RawArg { key, value })
    }
}

/// Read the arguments, recording every problem in `errors`. What could be read is
/// returned even when there were errors.
pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> LockedArgs {
    let mut parsed = LockedArgs::default();
    let raw = match Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(args) {
        Ok(raw) => raw,
        Err(err) => {
            errors.push(err);
            return parsed;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for RawArg { key, value } in raw {
        let key_text = key.unraw().to_string();
        if !KEYS.contains(&key_text.as_str()) {
            errors.push(syn::Error::new(
                key.span(),
                format!(
                    "unknown #[locked] argument `{key_text}`; expected one of: {}",
                    KEYS.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        }
        if seen.contains(&key_text) {
            errors.push(syn::Error::new(
                key.span(),
                format!("duplicate #[locked] argument `{key_text}`"),
            ));
            continue;
        }
        seen.push(key_text.clone());
        parsed.keys.push(key.clone());
        match key_text.as_str() {
            "name" => parsed.name = errors.ok(name_literal(&value)),
            "expires" => parsed.expires = errors.ok(duration::parse("expires", &value)),
            "wait" => parsed.wait = errors.ok(duration::parse("wait", &value)),
            "store" => parsed.store = Some(value),
            "guard" => parsed.guard = errors.ok(guard_ident(&value)),
            "keepalive" => parsed.keepalive = errors.ok(boolean("keepalive", &value)),
            "min_hold" => parsed.min_hold = errors.ok(duration::parse("min_hold", &value)),
            "once_per" => parsed.once_per = errors.ok(duration::parse("once_per", &value)),
            "on_locked" => {
                parsed.on_locked = errors.ok(on_locked(&value)).map(|mode| (key.clone(), mode));
            }
            _ => unreachable!("every key of KEYS is handled"),
        }
    }
    if !seen.iter().any(|k| k == "name") {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `name = \"...\"` in #[locked(...)]: the lock name, like name = \"job:{id}\"",
        ));
    }
    parsed
}

fn name_literal(value: &Expr) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            "`name` must be a string literal, like name = \"job:{id}\"",
        )),
    }
}

/// `"skip"` or `"error"`, as a string literal.
fn on_locked(value: &Expr) -> syn::Result<OnLocked> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value() == "skip" => Ok(OnLocked::Skip),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value() == "error" => Ok(OnLocked::Error),
        _ => Err(syn::Error::new_spanned(
            value,
            "`on_locked` must be \"skip\" (return Ok(()) or Ok(None) without running the body) \
             or \"error\" (return Err(lockmgr::Error::Locked { .. }), the default)",
        )),
    }
}

/// `true` or `false`, as a literal.
fn boolean(key: &str, value: &Expr) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Ok(flag.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be `true` or `false`"),
        )),
    }
}

fn guard_ident(value: &Expr) -> syn::Result<Ident> {
    match value {
        Expr::Path(ExprPath {
            attrs, qself, path, ..
        }) if attrs.is_empty() && qself.is_none() => path
            .get_ident()
            .filter(|ident| *ident != "self")
            .cloned()
            .ok_or(()),
        _ => Err(()),
    }
    .map_err(|()| {
        syn::Error::new_spanned(
            value,
            "`guard` must be an identifier, like guard = g; it binds the `&mut LockGuard`",
        )
    })
}
