//! `#[evloop::test]` and `#[evloop::main]`: run an `async fn` test, or `async fn main`,
//! on a fresh evloop `Loop`.
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
    wrap(item, "#[evloop::test]", &["evloop", "test", runner], true)
}

/// Turns `async fn main() -> R { body }` into `fn main() -> R` that runs `body` with
/// `evloop::run` (a fresh loop; leftover tasks cancelled and unwound on it, executor
/// jobs waited for, then the loop closed). Takes no argument.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error(&format!(
            "#[evloop::main] takes no argument, not `{}`",
            attr.to_string().trim()
        ));
    }
    wrap(item, "#[evloop::main]", &["evloop", "__main"], false)
}

/// Removes `async` from the function `item`, replaces its body with
/// `{ ::PATH(async move BODY) }`, and, for a test, puts `#[test]` on it.
fn wrap(item: TokenStream, name: &str, path: &[&str], test: bool) -> TokenStream {
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let Some(async_at) = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "async"))
    else {
        return compile_error(&format!("{name} goes on an `async fn`"));
    };
    tokens.remove(async_at);
    let body = match tokens.pop() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g,
        _ => return compile_error(&format!("{name}: expected a function body")),
    };
    // { ::PATH(async move BODY) }
    let mut call: Vec<TokenTree> = Vec::new();
    for seg in path {
        call.push(Punct::new(':', Spacing::Joint).into());
        call.push(Punct::new(':', Spacing::Alone).into());
        call.push(Ident::new(seg, Span::call_site()).into());
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
    if test {
        // #[test]
        out.push(Punct::new('#', Spacing::Alone).into());
        out.push(
            Group::new(
                Delimiter::Bracket,
                TokenStream::from(TokenTree::Ident(Ident::new("test", Span::call_site()))),
            )
            .into(),
        );
    }
    out.extend(tokens);
    out.push(new_body.into());
    out.into_iter().collect()
}

fn compile_error(msg: &str) -> TokenStream {
    format!("::core::compile_error!({msg:?});")
        .parse()
        .expect("valid tokens")
}
