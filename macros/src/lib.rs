//! `#[evloop::test]`: runs an `async fn` test on a fresh evloop `Loop`.
//!
//! Use it through the `evloop` crate (`#[evloop::test]`), not directly. Written
//! against `proc_macro` alone, with no parsing dependency: it needs only to find the
//! `async` keyword and the function body.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Turns `async fn name() -> R { body }` into a `#[test] fn name() -> R` that runs
/// `body` to completion on a fresh loop, closed afterwards.
///
/// - `#[evloop::test]`: the system clock.
/// - `#[evloop::test(manual_clock)]`: a manual, auto-advancing clock, so that
///   timeouts of minutes complete in milliseconds.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let runner = match attr.to_string().trim() {
        "" => "run",
        "manual_clock" => "run_manual_clock",
        other => {
            return compile_error(&format!(
                "#[evloop::test] takes no argument or `manual_clock`, not `{other}`"
            ));
        }
    };
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let Some(async_at) = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "async"))
    else {
        return compile_error("#[evloop::test] goes on an `async fn`");
    };
    tokens.remove(async_at);
    let body = match tokens.pop() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g,
        _ => return compile_error("#[evloop::test]: expected a function body"),
    };
    // { ::evloop::test::RUNNER(async move BODY) }
    let mut call: Vec<TokenTree> = Vec::new();
    for (i, seg) in ["evloop", "test", runner].iter().enumerate() {
        if i == 0 {
            call.push(Punct::new(':', Spacing::Joint).into());
            call.push(Punct::new(':', Spacing::Alone).into());
        }
        call.push(Ident::new(seg, Span::call_site()).into());
        if i < 2 {
            call.push(Punct::new(':', Spacing::Joint).into());
            call.push(Punct::new(':', Spacing::Alone).into());
        }
    }
    let async_block: TokenStream = [
        TokenTree::Ident(Ident::new("async", Span::call_site())),
        TokenTree::Ident(Ident::new("move", Span::call_site())),
        TokenTree::Group(body.clone()),
    ]
    .into_iter()
    .collect();
    call.push(Group::new(Delimiter::Parenthesis, async_block).into());
    let new_body = Group::new(Delimiter::Brace, call.into_iter().collect());

    let mut out: Vec<TokenTree> = Vec::new();
    // #[test]
    out.push(Punct::new('#', Spacing::Alone).into());
    out.push(
        Group::new(
            Delimiter::Bracket,
            TokenStream::from(TokenTree::Ident(Ident::new("test", Span::call_site()))),
        )
        .into(),
    );
    out.extend(tokens);
    out.push(new_body.into());
    out.into_iter().collect()
}

fn compile_error(msg: &str) -> TokenStream {
    format!("::core::compile_error!({msg:?});")
        .parse()
        .expect("valid tokens")
}
