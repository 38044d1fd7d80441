//! Code generation, once every check has passed. The signature is emitted exactly as
//! written; only the body changes: register the declaration, render the name, acquire
//! (or return the error), bind the guard if asked, then run the original body with the
//! guard held in a local that drops on every way out.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{AttrStyle, ItemFn, LitStr};

use crate::attr::LockedArgs;
use crate::template::Template;
use crate::valid::{find_parameter, parameter_names};

/// The default expiry, in seconds (`lockmgr::DEFAULT_EXPIRES`).
const DEFAULT_EXPIRES: u64 = 600;

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

    let expires = args.expires.unwrap_or(DEFAULT_EXPIRES);
    let wait = match args.wait {
        Some(wait) => quote!(::core::option::Option::Some(#wait)),
        None => quote!(::core::option::Option::None),
    };
    let keepalive = args.keepalive.unwrap_or(false);
    let min_hold = match args.min_hold.filter(|secs| *secs > 0) {
        Some(secs) => quote!(::core::option::Option::Some(#secs)),
        None => quote!(::core::option::Option::None),
    };
    let options = quote! {
        ::lockmgr::__private::CallOptions {
            expires: #expires,
            wait: #wait,
            keepalive: #keepalive,
            min_hold: #min_hold,
        }
    };
    let template_lit = &template.lit;
    let fn_name = sig.ident.unraw().to_string();
    let decl_span = sig.ident.span();
    let file = quote_spanned!(decl_span=> ::core::file!());
    let line = quote_spanned!(decl_span=> ::core::line!());
    let register = quote! {
        ::lockmgr::__private::inventory::submit! {
            ::lockmgr::DeclaredLock::new(
                #template_lit,
                #expires,
                #wait,
                ::core::concat!(::core::module_path!(), "::", #fn_name),
                #file,
                #line,
            )
            .with_liveness(#keepalive, #min_hold)
        }
    };

    // The name: a format_args! over the placeholders' parameters. The parameter idents
    // keep their own hygiene but report errors (say, a missing Display) at the literal.
    let lit_span = template.lit.span();
    let format = LitStr::new(&template.format_string(), lit_span);
    let values = template.placeholders().map(|placeholder| {
        let mut ident = find_parameter(&params, placeholder)
            .expect("valid::check saw every placeholder name a parameter")
            .clone();
        ident.set_span(ident.span().located_at(lit_span));
        ident
    });
    let name = quote!(::core::format_args!(#format #(, #values)*));
    // A `store` of the wrong type is reported at the expression.
    let store = match &args.store {
        Some(expr) => quote_spanned!(expr.span()=> ::lockmgr::__private::given_store(#expr)),
        None => quote!(::lockmgr::__private::default_store()),
    };

    let (prepare, acquired) = if sig.asyncness.is_some() {
        // Two statements: the name's temporaries end with the first, so the future
        // holds nothing borrowed (nor anything !Send) across the await.
        (
            quote! {
                let #acquire_local = ::lockmgr::__private::acquire_async(#store, #name, #options);
            },
            quote!(#acquire_local.await),
        )
    } else {
        (
            TokenStream::new(),
            quote!(::lockmgr::__private::acquire(#store, #name, #options)),
        )
    };
    let (mutability, bind_guard) = match &args.guard {
        Some(guard) => (quote!(mut), quote!(let #guard = &mut #guard_local;)),
        None => (TokenStream::new(), TokenStream::new()),
    };

    quote! {
        #(#outer_attrs)*
        #vis #sig {
            #(#inner_attrs)*
            #register
            #prepare
            let #mutability #guard_local = match #acquired {
                ::core::result::Result::Ok(#ok) => #ok,
                ::core::result::Result::Err(#err) => {
                    return ::core::result::Result::Err(::core::convert::From::from(#err));
                }
            };
            #bind_guard
            #block
        }
    }
}
