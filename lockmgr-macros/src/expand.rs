//! Code generation, once every check has passed. The signature is emitted exactly as
//! written; only the body changes: declare and register the lock, render the name,
//! acquire (or return the error, or skip), bind the guard if asked, then run the
//! original body's statements with the guard held in a local that drops on every way
//! out. In an `async fn` the statements run in an inner `async move` block, whose
//! result is returned after the guard's release has been awaited.
//!
//! Generated code calls only into `::lockmgr::__private`. The body's statements are
//! spliced in as they are (not as a nested block), so a one-line body such as
//! `{ Ok(()) }` triggers no `unused_braces` warning.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{AttrStyle, ItemFn, LitStr, ReturnType};

use crate::attr::{LockedArgs, OnLocked};
use crate::template::Template;
use crate::valid::{find_parameter, is_self, parameter_names};

/// The guarded function.
pub(crate) fn expand(func: ItemFn, args: LockedArgs, template: Template) -> TokenStream {
    let params = parameter_names(&func);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let (inner_attrs, outer_attrs): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Inner(_)));

    // Our locals are hygienic (mixed-site) *and* prefixed: the body can neither see nor
    // shadow them, and they cannot shadow anything the body uses.
    let hygienic = Span::mixed_site();
    let guard_local = format_ident!("__lockmgr_guard", span = hygienic);
    let acquire_local = format_ident!("__lockmgr_acquire", span = hygienic);
    let ok = format_ident!("__lockmgr_ok", span = hygienic);
    let err = format_ident!("__lockmgr_err", span = hygienic);
    let declaration = format_ident!("__LOCKMGR_DECLARATION");

    let declare = declaration_tokens(
        &args,
        &template,
        &sig.ident.unraw().to_string(),
        sig.ident.span(),
    );
    // The limit on a name's length lives in the runtime: check the template's fixed
    // text against it at compile time, pointing at the literal.
    let fixed_len = template.fixed_len();
    let fits = quote_spanned! {template.lit.span()=>
        const _: () = ::lockmgr::__private::check_fixed_text(#fixed_len);
    };
    let register = quote! {
        #fits
        const #declaration: ::lockmgr::__private::Declaration = #declare;
        ::lockmgr::__private::inventory::submit! { #declaration }
    };

    // The name: a format_args! over the placeholders' values. The parameter idents
    // keep their own hygiene but report errors (say, a missing Display) at the literal.
    let lit_span = template.lit.span();
    let format = LitStr::new(&template.format_string(), lit_span);
    let values = template.placeholders().map(|placeholder| {
        if is_self(placeholder) {
            let receiver = syn::Ident::new("self", lit_span);
            return match placeholder.strip_prefix("self.") {
                Some(field) => {
                    let member: syn::Member = syn::parse_str(field)
                        .unwrap_or_else(|_| syn::Member::Named(format_ident!("{}", field)));
                    let member = with_span(member, lit_span);
                    quote_spanned!(lit_span=> #receiver.#member)
                }
                None => quote!(#receiver),
            };
        }
        let mut ident = find_parameter(&params, placeholder)
            .expect("valid::check saw every placeholder name a parameter")
            .clone();
        ident.set_span(ident.span().located_at(lit_span));
        quote!(#ident)
    });
    let name = quote!(::core::format_args!(#format #(, #values)*));
    // A `store` of the wrong type is reported at the expression.
    let store = match &args.store {
        Some(expr) => quote_spanned!(expr.span()=> ::lockmgr::__private::given_store(#expr)),
        None => quote!(::lockmgr::__private::default_store()),
    };

    let skip = args.once_per.is_some() || matches!(args.on_locked, Some((_, OnLocked::Skip)));
    let function = match (sig.asyncness.is_some(), skip) {
        (false, false) => quote!(::lockmgr::__private::acquire),
        (false, true) => quote!(::lockmgr::__private::acquire_or_skip),
        (true, false) => quote!(::lockmgr::__private::acquire_async),
        (true, true) => quote!(::lockmgr::__private::acquire_or_skip_async),
    };
    let (prepare, acquired) = if sig.asyncness.is_some() {
        // Two statements: the name's temporaries end with the first, so the future
        // holds nothing borrowed (nor anything !Send) across the await.
        (
            quote! {
                let #acquire_local = #function(#store, #name, &#declaration);
            },
            quote!(#acquire_local.await),
        )
    } else {
        (
            TokenStream::new(),
            quote!(#function(#store, #name, &#declaration)),
        )
    };
    // The return type decides whether a lock error (or a skip) can be returned; a type
    // that cannot is reported there.
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    };
    // The whole call carries that span, so the compiler points there.
    let returned = quote_spanned!(ret_span=> ::lockmgr::__private::returned(#err));
    let skipped = quote_spanned!(ret_span=> ::lockmgr::__private::skipped());
    let outcome = if skip {
        quote! {
            ::core::result::Result::Ok(::core::option::Option::Some(#ok)) => #ok,
            ::core::result::Result::Ok(::core::option::Option::None) => {
                return #skipped;
            }
        }
    } else {
        quote!(::core::result::Result::Ok(#ok) => #ok,)
    };
    let (mutability, bind_guard) = match &args.guard {
        Some(guard) => (quote!(mut), quote!(let #guard = &mut #guard_local;)),
        None => (TokenStream::new(), TokenStream::new()),
    };
    let stmts = &block.stmts;
    let body = if sig.asyncness.is_some() {
        // The body runs in an async block, so that its `return`s and `?`s come back
        // here: the normal way out then releases on the blocking pool (awaited),
        // not in the guard's `Drop`. A dropped future or a panic still drops the
        // guard, which releases.
        let output = format_ident!("__lockmgr_output", span = hygienic);
        quote! {
            let #output = async move { #(#stmts)* }.await;
            ::lockmgr::__private::unlock_async(#guard_local).await;
            #output
        }
    } else {
        quote!(#(#stmts)*)
    };

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #register
            #prepare
            let #mutability #guard_local = match #acquired {
                #outcome
                ::core::result::Result::Err(#err) => {
                    return #returned;
                }
            };
            #bind_guard
            #body
        }
    }
}

/// The `const` declaration: the attribute's settings, defaults filled in by the
/// runtime's `declare`.
fn declaration_tokens(
    args: &LockedArgs,
    template: &Template,
    fn_name: &str,
    decl_span: Span,
) -> TokenStream {
    let template_lit = &template.lit;
    let file = quote_spanned!(decl_span=> ::core::file!());
    let line = quote_spanned!(decl_span=> ::core::line!());
    let mut tokens = quote! {
        ::lockmgr::__private::declare(
            #template_lit,
            ::core::concat!(::core::module_path!(), "::", #fn_name),
            #file,
            #line,
        )
    };
    // Without keep-alive and without `expires`, django-lockmgr's 600 s; `expires` (set after)
    // overrides it.
    if args.keepalive == Some(false) {
        tokens.extend(quote!(.without_keepalive()));
    }
    let durations = [
        ("expires", &args.expires),
        ("wait", &args.wait),
        ("min_hold", &args.min_hold),
        ("once_per", &args.once_per),
    ];
    for (key, value) in durations {
        if let Some(value) = value {
            let setter = format_ident!("{}", key);
            let value = value.to_tokens();
            tokens.extend(quote!(.#setter(#value)));
        }
    }
    if let Some((_, OnLocked::Skip)) = &args.on_locked {
        tokens.extend(quote!(.skip_when_locked()));
    }
    let literals = template.literals();
    tokens.extend(quote!(.literals(&[#(#literals),*])));
    tokens.extend(quote!(.done()));
    tokens
}

fn with_span(member: syn::Member, span: Span) -> syn::Member {
    match member {
        syn::Member::Named(mut ident) => {
            ident.set_span(span);
            syn::Member::Named(ident)
        }
        syn::Member::Unnamed(mut index) => {
            index.span = span;
            syn::Member::Unnamed(index)
        }
    }
}
