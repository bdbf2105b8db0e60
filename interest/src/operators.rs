//! What one field must hold: a regular expression (a JSON string, as ever),
//! an operator object, or a list of them, any of which may match.
//!
//! Each operator says what it compares: `prefix`, `suffix`,
//! `equalsIgnoreCase` and `anythingBut` compare the value's text (a number's
//! or boolean's JSON text, any element of an array), `numeric` compares
//! numbers as numbers, `exists` asks whether the field is there at all, and
//! `cidr` whether a string is an IP address inside a network.

use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::path::for_each_text;

/// Most alternatives in one field's list, and values in one `anythingBut`.
pub const MAX_ALTERNATIVES: usize = 64;

/// One condition on a field.
#[derive(Debug, Clone)]
pub enum Condition {
    Regex(Pattern),
    Prefix(String),
    Suffix(String),
    /// Lower-cased.
    EqualsIgnoreCase(String),
    AnythingBut(Vec<String>),
    Numeric {
        bounds: Vec<(Cmp, f64)>,
        /// Also strings that read as numbers (`"12.5"`).
        strings: bool,
    },
    Exists(bool),
    Cidr {
        network: IpAddr,
        bits: u8,
    },
}

/// A regular expression that was compiled once to check it, and is kept as
/// its source: the matcher compiles a field's patterns together, so each
/// queue's own compiled form (kilobytes) is needed only to explain a match,
/// and is made again then.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: Box<str>,
    compiled: OnceLock<Regex>,
    /// The captures it has that give a copy something (`Capture`s, a bit
    /// each).
    captures: u8,
}

/// A capture whose text a match gives the copy it routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// `(?P<key>…)`: the copy's key.
    Key,
    /// `(?P<group>…)`: the copy's fairness group.
    Group,
}

impl Capture {
    pub const ALL: [Capture; 2] = [Capture::Key, Capture::Group];

    pub fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Group => "group",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl Pattern {
    /// A pattern that `compile` accepted, as `compiled`.
    pub(crate) fn checked(source: &str, compiled: &Regex) -> Self {
        let captures = Capture::ALL
            .into_iter()
            .filter(|c| compiled.capture_names().any(|n| n == Some(c.name())))
            .fold(0, |bits, c| bits | c.bit());
        Self {
            source: source.into(),
            compiled: OnceLock::new(),
            captures,
        }
    }

    /// Whether a match gives the copy `capture`.
    pub fn has(&self, capture: Capture) -> bool {
        self.captures & capture.bit() != 0
    }

    /// The text of `capture` where the pattern matches `text`.
    pub fn capture_in(&self, capture: Capture, text: &str) -> Option<String> {
        let captures = self.regex().captures(text)?;
        captures.name(capture.name()).map(|m| m.as_str().to_owned())
    }

    fn regex(&self) -> &Regex {
        self.compiled.get_or_init(|| {
            // It compiled within the registered limit when it was checked;
            // the limit here only has to be no smaller.
            crate::interests::compile(&self.source, usize::MAX).expect("a checked pattern compiles")
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex().is_match(text)
    }
}

/// A comparison of `numeric`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Cmp {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "<" => Self::Lt,
            "<=" => Self::Le,
            "=" => Self::Eq,
            ">=" => Self::Ge,
            ">" => Self::Gt,
            _ => return None,
        })
    }

    fn holds(self, x: f64, bound: f64) -> bool {
        match self {
            Self::Lt => x < bound,
            Self::Le => x <= bound,
            Self::Eq => x == bound,
            Self::Ge => x >= bound,
            Self::Gt => x > bound,
        }
    }
}

/// Why an operator was refused: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorError {
    pub operator: String,
    pub message: String,
}

fn refuse(operator: &str, message: impl Into<String>) -> OperatorError {
    OperatorError {
        operator: operator.to_owned(),
        message: message.into(),
    }
}

/// Reads an operator object (`{"prefix": "eu-"}`); the regex case is the
/// caller's, which has its own limits and errors.
pub fn parse_operator(
    object: &Map<String, Value>,
    max_len: usize,
) -> Result<Condition, OperatorError> {
    let mut keys = object.keys().filter(|k| k.as_str() != "strings");
    let (Some(name), None) = (keys.next(), keys.next()) else {
        return Err(refuse(
            "",
            "an operator object names one operator: prefix, suffix, equalsIgnoreCase, anythingBut, numeric, exists or cidr",
        ));
    };
    let arg = &object[name];
    if object.contains_key("strings") && name != "numeric" {
        return Err(refuse(name, "`strings` goes only with `numeric`"));
    }
    let text = |v: &Value| -> Result<String, OperatorError> {
        match v {
            Value::String(s) if s.len() <= max_len => Ok(s.clone()),
            Value::String(_) => Err(refuse(name, format!("may be at most {max_len} bytes"))),
            _ => Err(refuse(name, "takes a string")),
        }
    };
    Ok(match name.as_str() {
        "prefix" => Condition::Prefix(text(arg)?),
        "suffix" => Condition::Suffix(text(arg)?),
        "equalsIgnoreCase" => Condition::EqualsIgnoreCase(text(arg)?.to_lowercase()),
        "anythingBut" => {
            let values = match arg {
                Value::Array(items) if !items.is_empty() && items.len() <= MAX_ALTERNATIVES => items,
                _ => {
                    return Err(refuse(
                        name,
                        format!("takes a list of 1 to {MAX_ALTERNATIVES} strings, numbers or booleans"),
                    ))
                }
            };
            let mut texts = Vec::with_capacity(values.len());
            for v in values {
                let mut one = None;
                if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    for_each_text(v, |t| one = Some(t.to_owned()));
                }
                match one {
                    Some(t) if t.len() <= max_len => texts.push(t),
                    _ => {
                        return Err(refuse(
                            name,
                            "takes a list of strings, numbers or booleans",
                        ))
                    }
                }
            }
            Condition::AnythingBut(texts)
        }
        "numeric" => {
            let strings = match object.get("strings") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(refuse(name, "`strings` is true or false")),
            };
            let items = match arg {
                Value::Array(items) if matches!(items.len(), 2 | 4) => items,
                _ => {
                    return Err(refuse(
                        name,
                        "takes one or two comparisons: [\">=\", 10] or [\">=\", 10, \"<\", 20]",
                    ))
                }
            };
            let mut bounds = Vec::new();
            for pair in items.chunks(2) {
                let op = pair[0]
                    .as_str()
                    .and_then(Cmp::parse)
                    .ok_or_else(|| refuse(name, "a comparison is one of <, <=, =, >=, >"))?;
                let bound = pair[1]
                    .as_f64()
                    .filter(|b| b.is_finite())
                    .ok_or_else(|| refuse(name, "each comparison takes a number"))?;
                bounds.push((op, bound));
            }
            Condition::Numeric { bounds, strings }
        }
        "exists" => match arg {
            Value::Bool(b) => Condition::Exists(*b),
            _ => return Err(refuse(name, "takes true or false")),
        },
        "cidr" => {
            let spec = text(arg)?;
            let (addr, bits) = spec
                .split_once('/')
                .ok_or_else(|| refuse(name, "takes a network such as 10.0.0.0/8 or fd00::/8"))?;
            let network: IpAddr = addr
                .parse()
                .map_err(|_| refuse(name, format!("`{addr}` is not an IP address")))?;
            let max = if network.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| refuse(name, format!("the prefix length is 0 to {max}")))?;
            Condition::Cidr { network, bits }
        }
        other => {
            return Err(refuse(
                other,
                "is no operator: use prefix, suffix, equalsIgnoreCase, anythingBut, numeric, exists or cidr",
            ))
        }
    })
}

impl Condition {
    /// What matched in `value` (the field's value, `None` when absent): the
    /// text of the matching value, empty for an `exists: false` match.
    pub fn matches(&self, value: Option<&Value>) -> Option<String> {
        let value = match (self, value) {
            (Self::Exists(want), v) => {
                let present = v.is_some_and(|v| !v.is_null());
                return (present == *want).then(|| v.map(text_of).unwrap_or_default());
            }
            (_, None) => return None,
            (_, Some(v)) => v,
        };
        if let Self::Numeric { bounds, strings } = self {
            let mut hit = None;
            for_each_number(value, *strings, |x, text| {
                if hit.is_none() && bounds.iter().all(|(op, b)| op.holds(x, *b)) {
                    hit = Some(text.to_owned());
                }
            });
            return hit;
        }
        let mut hit = None;
        for_each_text(value, |text| {
            if hit.is_none() && self.matches_text(text) {
                hit = Some(text.to_owned());
            }
        });
        hit
    }

    /// Whether one text of a value matches (the text operators and regex).
    pub(crate) fn matches_text(&self, text: &str) -> bool {
        match self {
            Self::Regex(r) => r.is_match(text),
            Self::Prefix(p) => text.starts_with(p.as_str()),
            Self::Suffix(s) => text.ends_with(s.as_str()),
            Self::EqualsIgnoreCase(s) => text.to_lowercase() == *s,
            Self::AnythingBut(values) => !values.iter().any(|v| v == text),
            Self::Cidr { network, bits } => text
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *network, *bits)),
            Self::Numeric { .. } | Self::Exists(_) => false,
        }
    }
}

fn text_of(value: &Value) -> String {
    let mut out = String::new();
    for_each_text(value, |t| {
        if out.is_empty() {
            out = t.to_owned();
        }
    });
    out
}

/// Each number in a value (an array's elements too), with its text; with
/// `strings`, also strings that read as finite numbers.
pub(crate) fn for_each_number(value: &Value, strings: bool, mut f: impl FnMut(f64, &str)) {
    let mut one = |v: &Value| match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                f(x, &n.to_string());
            }
        }
        Value::String(s) if strings => {
            if let Ok(x) = s.trim().parse::<f64>() {
                if x.is_finite() {
                    f(x, s);
                }
            }
        }
        _ => {}
    };
    match value {
        Value::Array(items) => items.iter().for_each(&mut one),
        other => one(other),
    }
}

fn in_network(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits as u32;
    (ip >> shift) == (network >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(v: Value) -> Result<Condition, OperatorError> {
        parse_operator(v.as_object().unwrap(), 1024)
    }

    fn hit(c: &Condition, v: Value) -> Option<String> {
        c.matches(Some(&v))
    }

    #[test]
    fn text_operators_compare_text() {
        let p = op(json!({"prefix": "eu-"})).unwrap();
        assert_eq!(hit(&p, json!("eu-west")), Some("eu-west".into()));
        assert_eq!(hit(&p, json!("us-eu-")), None);
        assert_eq!(hit(&p, json!(["us", "eu-1"])), Some("eu-1".into()));
        let s = op(json!({"suffix": ".png"})).unwrap();
        assert!(hit(&s, json!("a.png")).is_some() && hit(&s, json!("a.png.gz")).is_none());
        let e = op(json!({"equalsIgnoreCase": "Order"})).unwrap();
        assert!(hit(&e, json!("ORDER")).is_some() && hit(&e, json!("orders")).is_none());
        let b = op(json!({"anythingBut": ["test", 0, false]})).unwrap();
        assert!(hit(&b, json!("prod")).is_some());
        assert!(hit(&b, json!("test")).is_none());
        assert!(hit(&b, json!(0)).is_none() && hit(&b, json!(false)).is_none());
        assert!(
            b.matches(None).is_none(),
            "an absent field is not anything but"
        );
        assert!(hit(&b, json!(null)).is_none());
    }

    #[test]
    fn numbers_compare_as_numbers_and_strings_only_when_asked() {
        let n = op(json!({"numeric": [">=", 10, "<", 20]})).unwrap();
        assert_eq!(hit(&n, json!(10)), Some("10".into()));
        assert!(hit(&n, json!(19.5)).is_some());
        assert!(hit(&n, json!(20)).is_none() && hit(&n, json!(9)).is_none());
        assert!(hit(&n, json!("15")).is_none(), "a string is not a number");
        assert!(hit(&n, json!([1, 12])).is_some());
        let neg = op(json!({"numeric": ["<", -1.5]})).unwrap();
        assert!(hit(&neg, json!(-2)).is_some() && hit(&neg, json!(-1.5)).is_none());
        let s = op(json!({"numeric": ["=", 15], "strings": true})).unwrap();
        assert!(hit(&s, json!(" 15 ")).is_some() && hit(&s, json!("15.0")).is_some());
        assert!(hit(&s, json!("fifteen")).is_none() && hit(&s, json!("NaN")).is_none());
        // 10 as text is "10" whatever the input's spelling.
        assert!(hit(&n, json!(1e1)).is_some());
    }

    #[test]
    fn exists_asks_whether_the_field_is_there() {
        let yes = op(json!({"exists": true})).unwrap();
        let no = op(json!({"exists": false})).unwrap();
        assert!(hit(&yes, json!(0)).is_some() && hit(&yes, json!([])).is_some());
        assert!(hit(&yes, json!(null)).is_none() && yes.matches(None).is_none());
        assert!(no.matches(None).is_some() && hit(&no, json!(null)).is_some());
        assert!(hit(&no, json!("x")).is_none());
    }

    #[test]
    fn cidr_takes_addresses_inside_the_network() {
        let v4 = op(json!({"cidr": "10.0.0.0/8"})).unwrap();
        assert!(hit(&v4, json!("10.200.3.4")).is_some());
        assert!(hit(&v4, json!("11.0.0.1")).is_none() && hit(&v4, json!("not an ip")).is_none());
        assert!(hit(&v4, json!("::ffff:10.0.0.1")).is_none(), "v6 is not v4");
        let v6 = op(json!({"cidr": "fd00::/8"})).unwrap();
        assert!(hit(&v6, json!("fd12::1")).is_some() && hit(&v6, json!("fe80::1")).is_none());
        let all = op(json!({"cidr": "0.0.0.0/0"})).unwrap();
        assert!(hit(&all, json!("1.2.3.4")).is_some());
        let one = op(json!({"cidr": "192.168.1.7/32"})).unwrap();
        assert!(
            hit(&one, json!("192.168.1.7")).is_some() && hit(&one, json!("192.168.1.8")).is_none()
        );
    }

    #[test]
    fn bad_operators_say_which_and_why() {
        for (v, operator) in [
            (json!({}), ""),
            (json!({"prefix": "a", "suffix": "b"}), ""),
            (json!({"prefx": "a"}), "prefx"),
            (json!({"prefix": 3}), "prefix"),
            (json!({"anythingBut": []}), "anythingBut"),
            (json!({"anythingBut": [{"a": 1}]}), "anythingBut"),
            (json!({"numeric": [">", "ten"]}), "numeric"),
            (json!({"numeric": ["~", 1]}), "numeric"),
            (json!({"numeric": [">", 1, "<"]}), "numeric"),
            (json!({"numeric": [">", 1], "strings": "yes"}), "numeric"),
            (json!({"prefix": "a", "strings": true}), "prefix"),
            (json!({"exists": "yes"}), "exists"),
            (json!({"cidr": "10.0.0.0"}), "cidr"),
            (json!({"cidr": "10.0.0.0/33"}), "cidr"),
            (json!({"cidr": "ten/8"}), "cidr"),
        ] {
            let err = op(v.clone()).unwrap_err();
            assert_eq!(err.operator, operator, "{v}: {}", err.message);
        }
        let long = parse_operator(json!({"prefix": "abcdef"}).as_object().unwrap(), 3);
        assert_eq!(long.unwrap_err().operator, "prefix");
    }
}
