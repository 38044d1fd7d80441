//! Every check that needs both the arguments and the function, or several arguments
//! together: the placeholders name parameters (or `self` in a method), the function
//! returns something, it is not a `const fn`, the guard binding does not hide a
//! parameter, and `once_per` goes with the keys it allows. Nothing here emits tokens.
//!
//! Whether the return type is a `Result` whose error converts from `lockmgr::Error` is
//! left to the compiler (the `LockedReturn` trait of the runtime), so that aliases such
//! as `type JobResult = Result<(), MyError>` work and a missing `From` is reported at
//! the return type.

use syn::ext::IdentExt;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType};

use crate::attr::{LockedArgs, OnLocked};
use crate::errors::Errors;
use crate::template::Template;

/// Check the function and the arguments against each other, recording every problem.
pub(crate) fn check(
    func: &ItemFn,
    args: &LockedArgs,
    template: Option<&Template>,
    errors: &mut Errors,
) {
    let params = parameter_names(func);
    if let Some(template) = template {
        let mut reported: Vec<&str> = Vec::new();
        let has_self = func
            .sig
            .inputs
            .iter()
            .any(|input| matches!(input, FnArg::Receiver(_)));
        for placeholder in template.placeholders() {
            if reported.contains(&placeholder) {
                continue;
            }
            if is_self(placeholder) {
                if !has_self {
                    reported.push(placeholder);
                    errors.push(syn::Error::new(
                        template.lit.span(),
                        format!(
                            "the placeholder `{{{placeholder}}}` needs a method with a `self` \
                             parameter; {}",
                            describe(&params)
                        ),
                    ));
                }
                continue;
            }
            if find_parameter(&params, placeholder).is_some() {
                continue;
            }
            reported.push(placeholder);
            errors.push(syn::Error::new(
                template.lit.span(),
                format!(
                    "no parameter named `{placeholder}` for the placeholder `{{{placeholder}}}`; {}",
                    describe(&params)
                ),
            ));
        }
    }
    if let Some(constness) = &func.sig.constness {
        errors.push(syn::Error::new_spanned(
            constness,
            "#[locked] cannot guard a `const fn`: it takes a lock when called at run time",
        ));
    }
    if let ReturnType::Default = &func.sig.output {
        errors.push(syn::Error::new_spanned(
            &func.sig.ident,
            "#[locked] functions must return `Result<T, E>` with `E: From<lockmgr::Error>`; \
             this one returns `()`",
        ));
    }
    check_once_per(args, errors);
    if let Some(guard) = &args.guard {
        if params.iter().any(|p| guard == p) {
            errors.push(syn::Error::new(
                guard.span(),
                format!("`guard = {guard}` would hide the parameter `{guard}`; pick another name"),
            ));
        }
    }
}

/// `once_per` is a tick length, and excludes the keys whose meaning it takes over.
fn check_once_per(args: &LockedArgs, errors: &mut Errors) {
    let Some(once_per) = &args.once_per else {
        return;
    };
    if once_per.is_zero() {
        errors.push(syn::Error::new(
            once_per.span(),
            "`once_per` must be longer than zero: it is the length of a tick",
        ));
    }
    let conflicts = [
        (
            "wait",
            "`wait` does not go with `once_per`: a tick runs in the first call that takes \
             it, and the others skip at once",
        ),
        (
            "min_hold",
            "`min_hold` does not go with `once_per`: each tick already keeps its own row \
             until the tick is over",
        ),
    ];
    for (key, message) in conflicts {
        if let Some(key) = args.key(key) {
            errors.push(syn::Error::new(key.span(), message));
        }
    }
    if let Some((key, OnLocked::Error)) = &args.on_locked {
        errors.push(syn::Error::new(
            key.span(),
            "`on_locked = \"error\"` does not go with `once_per`: the calls of a tick that \
             another process runs are skipped, not errors",
        ));
    }
}

/// Whether a placeholder names `self` or one of its fields.
pub(crate) fn is_self(placeholder: &str) -> bool {
    placeholder == "self" || placeholder.starts_with("self.")
}

/// The parameter that a placeholder names (`{type}` names `r#type`).
pub(crate) fn find_parameter<'a>(params: &'a [Ident], placeholder: &str) -> Option<&'a Ident> {
    params.iter().find(|p| p.unraw() == placeholder)
}

/// The names the parameters bind (through tuple and struct patterns too), in order;
/// `self` is not among them.
pub(crate) fn parameter_names(func: &ItemFn) -> Vec<Ident> {
    let mut names = Vec::new();
    for input in &func.sig.inputs {
        if let FnArg::Typed(typed) = input {
            bindings(&typed.pat, &mut names);
        }
    }
    names
}

fn bindings(pat: &Pat, names: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(ident) => {
            names.push(ident.ident.clone());
            if let Some((_, sub)) = &ident.subpat {
                bindings(sub, names);
            }
        }
        Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| bindings(p, names)),
        Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| bindings(p, names)),
        Pat::Struct(st) => st.fields.iter().for_each(|f| bindings(&f.pat, names)),
        Pat::Slice(slice) => slice.elems.iter().for_each(|p| bindings(p, names)),
        Pat::Reference(reference) => bindings(&reference.pat, names),
        Pat::Type(typed) => bindings(&typed.pat, names),
        Pat::Paren(paren) => bindings(&paren.pat, names),
        _ => {}
    }
}

/// "the parameters are `a`, `b`", for the unknown-placeholder message.
fn describe(params: &[Ident]) -> String {
    match params {
        [] => "the function has no named parameters".to_string(),
        [one] => format!("the only parameter is `{one}`"),
        many => format!(
            "the parameters are {}",
            many.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
