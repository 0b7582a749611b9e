//! nginx-style templates: text and `$name` / `${name}` variables, split by
//! one reader for every setting that takes one (`log-format-upstream`,
//! `auth-url` and `auth-signin`, `upstream-hash-by`); each then says which
//! variables it fills in.

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    Text(&'a str),
    /// A variable's name, without `$` or braces.
    Var(&'a str),
}

/// The pieces of `template` in order; a `$` not followed by a name is
/// text. An unclosed `${` is an error.
pub fn tokens(template: &str) -> Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut text_start = 0;
    let mut consumed = 0;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let (name, used) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or("an unclosed ${")?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let at = consumed + i;
        if name.is_empty() {
            // A lone `$`: text, the scan goes on after it.
            consumed = at + 1;
            rest = &template[consumed..];
            continue;
        }
        if at > text_start {
            out.push(Token::Text(&template[text_start..at]));
        }
        out.push(Token::Var(name));
        consumed = at + 1 + used;
        text_start = consumed;
        rest = &template[consumed..];
    }
    if text_start < template.len() {
        out.push(Token::Text(&template[text_start..]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_variables_in_either_spelling() {
        assert_eq!(
            tokens("a $host-${request_uri}x $ $1.5 end").unwrap(),
            [
                Token::Text("a "),
                Token::Var("host"),
                Token::Text("-"),
                Token::Var("request_uri"),
                Token::Text("x $ "),
                Token::Var("1"),
                Token::Text(".5 end"),
            ]
        );
        assert_eq!(tokens("$").unwrap(), [Token::Text("$")]);
        assert_eq!(tokens("").unwrap(), []);
        assert!(tokens("x ${host").is_err());
    }
}
