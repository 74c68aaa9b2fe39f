//! `$(VAR_NAME)` expansion in a container's `command` and `args`, as the kubelet does it
//! (upstream `third_party/forked/golang/expansion`): a defined variable is replaced by its value, an
//! undefined one is left as written, `$$` escapes to a single `$`, and any other `$` stays literal.

use std::collections::HashMap;

/// Expands `$(NAME)` references in `input` with `lookup`; unresolved references stay verbatim.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is literal.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            other => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands every element of a container's `command` and `args` against its environment.
pub fn expand_command_args(
    command: &[String],
    args: &[String],
    env: &HashMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.get(name).cloned();
    (command.iter().map(|s| expand(s, lookup)).collect(), args.iter().map(|s| expand(s, lookup)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("GREETING".into(), "hello".into()), ("EMPTY".into(), String::new())])
    }

    fn ex(s: &str) -> String {
        let env = env();
        expand(s, |n| env.get(n).cloned())
    }

    #[test]
    fn expands_defined_and_keeps_undefined() {
        assert_eq!(ex("$(GREETING) world"), "hello world");
        assert_eq!(ex("x$(EMPTY)y"), "xy");
        assert_eq!(ex("$(MISSING)"), "$(MISSING)");
        assert_eq!(ex("$(GREETING)$(GREETING)"), "hellohello");
    }

    #[test]
    fn escapes_and_literals() {
        assert_eq!(ex("$$(GREETING)"), "$(GREETING)");
        assert_eq!(ex("$$$(GREETING)"), "$hello");
        assert_eq!(ex("cost: $5"), "cost: $5");
        assert_eq!(ex("trailing $"), "trailing $");
        assert_eq!(ex("$(GREETING"), "$(GREETING");
        assert_eq!(ex("$HOME"), "$HOME");
        assert_eq!(ex("$é"), "$é");
    }

    #[test]
    fn command_and_args_both_expand() {
        let (c, a) = expand_command_args(&["echo".into(), "$(GREETING)".into()], &["$(MISSING)".into()], &env());
        assert_eq!(c, vec!["echo", "hello"]);
        assert_eq!(a, vec!["$(MISSING)"]);
    }
}
