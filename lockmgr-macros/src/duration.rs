//! Durations in the attribute (`expires`, `wait`, `min_hold`, `once_per`): an integer
//! number of seconds (`60`), a string with a unit checked here (`"500ms"`, `"90s"`,
//! `"5m"`, `"1h"`, `"1d"`), or the path of a `const` of type `std::time::Duration`
//! (checked by the compiler: the declaration it goes into is itself a `const`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprPath, Lit, Path};

/// One duration argument as written.
#[derive(Clone)]
pub(crate) enum DurationArg {
    /// A literal, in milliseconds, with its span.
    Millis(u64, Span),
    /// A path to a `const` `Duration`.
    Const(Path),
}

impl DurationArg {
    /// Whether the duration is known to be zero (a const path is not known).
    pub(crate) fn is_zero(&self) -> bool {
        matches!(self, DurationArg::Millis(0, _))
    }

    /// The span of the value as written.
    pub(crate) fn span(&self) -> Span {
        match self {
            DurationArg::Millis(_, span) => *span,
            DurationArg::Const(path) => path.span(),
        }
    }

    /// An expression of type `Duration`, usable in a `const`.
    pub(crate) fn to_tokens(&self) -> TokenStream {
        match self {
            DurationArg::Millis(ms, _) if ms % 1000 == 0 => {
                let secs = ms / 1000;
                quote!(::lockmgr::__private::seconds(#secs))
            }
            DurationArg::Millis(ms, _) => quote!(::lockmgr::__private::millis(#ms)),
            // A path of the wrong type is reported at the path.
            DurationArg::Const(path) => quote_spanned!(path.span()=> #path),
        }
    }
}

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

fn expected(key: &str) -> String {
    format!(
        "`{key}` must be a duration: a non-negative integer number of seconds (`{key} = 60`), \
         a string with a unit (\"500ms\", \"90s\", \"5m\", \"1h\", \"1d\"), or the path of a \
         `const` of type `std::time::Duration`"
    )
}

/// Read the duration given to `key`.
pub(crate) fn parse(key: &str, value: &Expr) -> syn::Result<DurationArg> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.suffix().is_empty() || int.suffix().starts_with('u') => int
            .base10_parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1_000))
            .map(|ms| DurationArg::Millis(ms, value.span()))
            .ok_or_else(|| syn::Error::new_spanned(value, format!("`{key}` is too large"))),
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => with_unit(&text.value())
            .map(|ms| DurationArg::Millis(ms, value.span()))
            .map_err(|why| {
                syn::Error::new_spanned(value, format!("`{key}` = {:?}: {why}", text.value()))
            }),
        Expr::Path(ExprPath {
            attrs, qself, path, ..
        }) if attrs.is_empty() && qself.is_none() => Ok(DurationArg::Const(path.clone())),
        _ => Err(syn::Error::new_spanned(value, expected(key))),
    }
}

/// `"500ms"` → 500; the reason it is not a duration otherwise.
fn with_unit(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let units = "use an integer and one of the units ms, s, m, h, d, like \"500ms\" or \"5m\"";
    if number.is_empty() {
        return Err(format!("not a duration: {units}"));
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(if unit.is_empty() {
            format!("a duration string needs a unit: {units} (or write the seconds as an integer, without quotes)")
        } else {
            format!("unknown unit {unit:?}: {units}")
        });
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| "too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(with_unit("500ms"), Ok(500));
        assert_eq!(with_unit("90s"), Ok(90_000));
        assert_eq!(with_unit("5m"), Ok(300_000));
        assert_eq!(with_unit("1h"), Ok(3_600_000));
        assert_eq!(with_unit("1d"), Ok(86_400_000));
        assert_eq!(with_unit("0s"), Ok(0));
        assert!(with_unit("60").unwrap_err().contains("needs a unit"));
        assert!(with_unit("5 m")
            .unwrap_err()
            .contains("unknown unit \" m\""));
        assert!(with_unit("1.5s")
            .unwrap_err()
            .contains("unknown unit \".5s\""));
        assert!(with_unit("ms").unwrap_err().contains("not a duration"));
        assert!(with_unit("-5s").unwrap_err().contains("not a duration"));
        assert!(with_unit("99999999999999999999d")
            .unwrap_err()
            .contains("too large"));
    }
}
