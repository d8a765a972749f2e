//! multiproc's attribute macros; use them through the `multiproc` crate
//! (`#[multiproc::main]`), which is the only place they are documented.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Error, ItemFn, LitInt, LitStr, ReturnType, parse_macro_input};

/// The runtime an `async fn main` gets.
enum Flavor {
    MultiThread,
    CurrentThread,
}

/// What the attribute is on.
#[derive(Clone, Copy)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Kind::Main => "#[multiproc::main]",
            Kind::Test => "#[multiproc::test]",
        }
    }
}

/// What `#[multiproc::main(...)]` or `#[multiproc::test(...)]` was given.
struct Options {
    flavor: Option<(Flavor, Span)>,
    worker_threads: Option<LitInt>,
}

impl Options {
    fn parse(args: TokenStream, kind: Kind) -> Result<Options, Error> {
        let mut options = Options {
            flavor: None,
            worker_threads: None,
        };
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("flavor") {
                let value: LitStr = meta.value()?.parse()?;
                let flavor = match value.value().as_str() {
                    "multi_thread" => Flavor::MultiThread,
                    "current_thread" => Flavor::CurrentThread,
                    other => {
                        return Err(Error::new(
                            value.span(),
                            format!(
                                "unknown flavor `{other}`: expected \"multi_thread\" or \"current_thread\""
                            ),
                        ));
                    }
                };
                options.flavor = Some((flavor, value.span()));
                Ok(())
            } else if meta.path.is_ident("worker_threads") {
                let value: LitInt = meta.value()?.parse()?;
                if value.base10_parse::<usize>()? == 0 {
                    return Err(Error::new(
                        value.span(),
                        "worker_threads must be at least 1",
                    ));
                }
                options.worker_threads = Some(value);
                Ok(())
            } else {
                Err(meta.error(format!(
                    "unknown option: {} takes `flavor = \"multi_thread\" | \"current_thread\"` and `worker_threads = N`",
                    kind.attribute()
                )))
            }
        });
        syn::parse::Parser::parse(parser, args)?;
        Ok(options)
    }
}

/// Makes `main` call `multiproc::init()` first and, for an `async fn main`, then run
/// its body on a tokio runtime built for it. Documented in the `multiproc` crate.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(args, item, Kind::Main)
}

/// A `#[test]` that may start processes: its children become themselves before the
/// harness's `main`. Documented in the `multiproc` crate.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(args, item, Kind::Test)
}

fn attribute(args: TokenStream, item: TokenStream, kind: Kind) -> TokenStream {
    // On an error, the function is kept as written, so that the error is the only
    // one (not also "`main` function not found").
    let original = proc_macro2::TokenStream::from(item.clone());
    let refused = |e: Error| {
        let error = e.to_compile_error();
        quote! { #error #original }.into()
    };
    let options = match Options::parse(args, kind) {
        Ok(options) => options,
        Err(e) => return refused(e),
    };
    let function = parse_macro_input!(item as ItemFn);
    match expand(options, function, kind) {
        Ok(tokens) => tokens.into(),
        Err(e) => refused(e),
    }
}

fn expand(
    options: Options,
    function: ItemFn,
    kind: Kind,
) -> Result<proc_macro2::TokenStream, Error> {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = function;
    let what = match kind {
        Kind::Main => "`main`",
        Kind::Test => "a test",
    };
    let (attr, name) = (kind.attribute(), &sig.ident);
    if !sig.inputs.is_empty() {
        return Err(Error::new(
            sig.inputs.span(),
            format!("{attr} goes on {what}, which takes no arguments"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            format!("{attr} goes on {what}, which has no generic parameters"),
        ));
    }
    let (init, test) = match kind {
        Kind::Main => (
            quote_spanned! {sig.ident.span()=> ::multiproc::init(); },
            quote! {},
        ),
        Kind::Test => (
            quote_spanned! {sig.ident.span()=> ::multiproc::__private::init_for_tests(); },
            quote! { #[::core::prelude::v1::test] },
        ),
    };
    if sig.asyncness.is_none() {
        if let Some((_, span)) = options.flavor {
            return Err(Error::new(
                span,
                format!("`flavor` is for an `async fn {name}`: this one builds no runtime"),
            ));
        }
        if let Some(n) = options.worker_threads {
            return Err(Error::new(
                n.span(),
                format!("`worker_threads` is for an `async fn {name}`: this one builds no runtime"),
            ));
        }
        return Ok(quote! {
            #test
            #(#attrs)*
            #vis #sig {
                #init
                #block
            }
        });
    }
    sig.asyncness = None;
    let output = match &sig.output {
        ReturnType::Default => quote! { () },
        ReturnType::Type(_, ty) => quote! { #ty },
    };
    let flavor = options.flavor.map_or(Flavor::MultiThread, |(f, _)| f);
    let mut builder = match flavor {
        Flavor::MultiThread => {
            quote! { ::multiproc::__private::tokio::runtime::Builder::new_multi_thread() }
        }
        Flavor::CurrentThread => {
            if let Some(n) = &options.worker_threads {
                return Err(Error::new(
                    n.span(),
                    "`worker_threads` needs `flavor = \"multi_thread\"`",
                ));
            }
            quote! { ::multiproc::__private::tokio::runtime::Builder::new_current_thread() }
        }
    };
    if let Some(n) = options.worker_threads {
        builder = quote! { #builder.worker_threads(#n) };
    }
    Ok(quote! {
        #test
        #(#attrs)*
        #vis #sig {
            // In a child, `init()` runs the child and never returns: no runtime thread
            // may exist before it, which is why this is not `#[tokio::main]`.
            #init
            async fn __multiproc_main() -> #output #block
            #[allow(clippy::expect_used)]
            let runtime = #builder
                .enable_all()
                .build()
                .expect(concat!(#attr, ": building the tokio runtime failed"));
            runtime.block_on(__multiproc_main())
        }
    })
}
