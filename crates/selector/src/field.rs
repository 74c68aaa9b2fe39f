//! Field selectors: `a=b,c!=d` over the few fields each resource exposes (upstream `fields.ParseSelector`
//! and the per-kind field label conversions).

mod resources;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::SelectorError;

/// One `field=value` (or `field!=value`) term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

/// A parsed field selector: every term must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, sorted as upstream sorts them (by their text).
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Checks every field can be selected on this resource (by its group and plural). The error message is
    /// upstream's: `field label not supported: <field>` for kinds with their own field list, and
    /// `"<field>" is not a known field selector: only "metadata.name", "metadata.namespace"` for the rest.
    pub fn validate_for(&self, group: &str, plural: &str) -> Result<(), SelectorError> {
        let fields = resources::selectable(group, plural);
        for term in &self.terms {
            if !fields.supports(&term.field) {
                return Err(SelectorError::UnsupportedField(fields.unsupported_message(&term.field)));
            }
        }
        Ok(())
    }

    /// Whether the object satisfies every term. A field the object lacks has the value `""`.
    pub fn matches(&self, group: &str, plural: &str, obj: &Value) -> bool {
        self.terms.iter().all(|t| (resources::field_value(group, plural, obj, &t.field) == t.value) != t.negated)
    }

    /// The name an equality term on `metadata.name` pins, so the server can do a single get.
    pub fn exact_name(&self) -> Option<&str> {
        self.requires_exact_match("metadata.name")
    }

    /// The value an equality term pins `field` to (upstream `RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && !t.negated).map(|t| t.value.as_str())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    /// Upstream `fields.ParseSelector`: comma-separated `field=value`, `field==value`, `field!=value`; in
    /// values, `\`, `,` and `=` must be escaped with a backslash. No whitespace is trimmed.
    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, raw)) = split_term(part) else {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape(raw)?;
            terms.push(FieldTerm { field: field.to_string(), value, negated: op == "!=" });
        }
        Ok(Self { terms })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", t.field, escape(&t.value))?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash (the backslashes stay).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator (`!=`, `==`, `=`; checked in that order at each position).
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its code point.
            ',' | '=' => {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field selector: unescaped character in value: {}",
                    u32::from(c)
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::FieldSyntax("invalid field selector: invalid escape sequence: \\".into()));
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('\\', r"\\").replace(',', r"\,").replace('=', r"\=")
}

#[cfg(test)]
mod tests;
