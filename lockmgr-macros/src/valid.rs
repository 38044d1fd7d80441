//! Every check that needs both the arguments and the function: the placeholders name
//! parameters, the function returns a `Result`, it is not a `const fn`, and the guard
//! binding does not hide a parameter. Nothing here emits tokens.

use syn::ext::IdentExt;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::LockedArgs;
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
        for placeholder in template.placeholders() {
            if find_parameter(&params, placeholder).is_some() || reported.contains(&placeholder) {
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
    match &func.sig.output {
        ReturnType::Type(_, ty) if returns_result(ty) => {}
        ReturnType::Type(_, ty) => errors.push(syn::Error::new_spanned(
            ty,
            "#[locked] functions must return `Result<T, E>` with `E: From<lockmgr::Error>`",
        )),
        ReturnType::Default => errors.push(syn::Error::new_spanned(
            &func.sig.ident,
            "#[locked] functions must return `Result<T, E>` with `E: From<lockmgr::Error>`; \
             this one returns `()`",
        )),
    }
    if let Some(guard) = &args.guard {
        if params.iter().any(|p| guard == p) {
            errors.push(syn::Error::new(
                guard.span(),
                format!("`guard = {guard}` would hide the parameter `{guard}`; pick another name"),
            ));
        }
    }
}

/// Whether `ty` reads as a `Result`: a path whose last segment is `Result` (so
/// `std::io::Result<T>` and `anyhow::Result<T>` count too).
fn returns_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        Type::Paren(inner) => returns_result(&inner.elem),
        Type::Group(inner) => returns_result(&inner.elem),
        _ => false,
    }
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
