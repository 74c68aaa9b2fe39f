//! A small command-line flag parser in the style of Go's pflag, which the upstream images use:
//! `--name=value`, `--name value`, and for booleans `--name`, `--name=true|false`. A single leading dash is
//! accepted too. Unknown flags and stray arguments are errors, as they are for cobra commands.

use std::collections::HashMap;

/// A flag the command accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    pub name: &'static str,
    pub boolean: bool,
}

pub(crate) const fn value(name: &'static str) -> Flag {
    Flag { name, boolean: false }
}

pub(crate) const fn boolean(name: &'static str) -> Flag {
    Flag { name, boolean: true }
}

/// Why the arguments do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("unknown flag: --{0}")]
    Unknown(String),
    #[error("flag needs an argument: --{0}")]
    MissingValue(String),
    #[error("invalid argument {value:?} for --{name}: {reason}")]
    Invalid { name: String, value: String, reason: String },
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
}

/// Parsed flags: the last value given for each name.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, String>,
}

impl Flags {
    /// Parses `args` against `spec`; positional arguments are refused.
    pub fn parse(args: &[String], spec: &[Flag]) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty()) else {
                return Err(FlagError::Unexpected(arg.clone()));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let flag = spec.iter().find(|f| f.name == name).ok_or_else(|| FlagError::Unknown(name.to_string()))?;
            let value = match (inline, flag.boolean) {
                (Some(v), _) => v,
                (None, true) => "true".to_string(),
                (None, false) => iter.next().cloned().ok_or_else(|| FlagError::MissingValue(name.to_string()))?,
            };
            flags.values.insert(flag.name, value);
        }
        Ok(flags)
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, FlagError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: std::num::ParseIntError| FlagError::Invalid {
                name: name.to_string(),
                value: v.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// A port: 1–65535.
    pub fn port(&self, name: &str, default: u16) -> Result<u16, FlagError> {
        let n = self.int(name, i64::from(default))?;
        u16::try_from(n).ok().filter(|p| *p != 0).ok_or_else(|| FlagError::Invalid {
            name: name.to_string(),
            value: n.to_string(),
            reason: "not a port number".to_string(),
        })
    }

    /// A port, or `None` for `-1` (disabled), as agnhost's `--udp-port=-1`.
    pub fn optional_port(&self, name: &str, default: Option<u16>) -> Result<Option<u16>, FlagError> {
        match self.int(name, default.map_or(-1, i64::from))? {
            -1 => Ok(None),
            n => u16::try_from(n).ok().filter(|p| *p != 0).map(Some).ok_or_else(|| FlagError::Invalid {
                name: name.to_string(),
                value: n.to_string(),
                reason: "not a port number (-1 disables)".to_string(),
            }),
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, FlagError> {
        match self.values.get(name).map(|v| v.as_str()) {
            None => Ok(default),
            Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(FlagError::Invalid {
                name: name.to_string(),
                value: v.to_string(),
                reason: "not a boolean".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Flag] = &[value("http-port"), value("udp-port"), boolean("udp"), boolean("http")];

    fn parse(args: &[&str]) -> Result<Flags, FlagError> {
        Flags::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), SPEC)
    }

    #[test]
    fn go_style_forms() {
        let f = parse(&["--http-port=81", "-udp-port", "-1", "--udp", "--http=false"]).unwrap();
        assert_eq!(f.port("http-port", 8080).unwrap(), 81);
        assert_eq!(f.optional_port("udp-port", Some(8081)).unwrap(), None);
        assert!(f.bool("udp", false).unwrap());
        assert!(!f.bool("http", true).unwrap());
        let f = parse(&[]).unwrap();
        assert_eq!(f.port("http-port", 8080).unwrap(), 8080);
        assert_eq!(f.optional_port("udp-port", Some(8081)).unwrap(), Some(8081));
        assert!(f.bool("http", true).unwrap());
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&["--nope"]).unwrap_err(), FlagError::Unknown("nope".into()));
        assert_eq!(parse(&["--http-port"]).unwrap_err(), FlagError::MissingValue("http-port".into()));
        assert_eq!(parse(&["extra"]).unwrap_err(), FlagError::Unexpected("extra".into()));
        assert!(parse(&["--http-port=x"]).unwrap().port("http-port", 1).is_err());
        assert!(parse(&["--http-port=70000"]).unwrap().port("http-port", 1).is_err());
        assert!(parse(&["--udp-port=-2"]).unwrap().optional_port("udp-port", None).is_err());
        assert!(parse(&["--udp=maybe"]).unwrap().bool("udp", false).is_err());
    }
}
