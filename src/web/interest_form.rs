//! Interests as people write them: a row per field, with the pattern as the
//! regular expression it is (or an operator and its value), not as a JSON
//! string with its escapes. Interests that rows cannot say (rule lists,
//! several patterns for one field) are edited as JSON.

use serde_json::{json, Map, Value};

/// What a queue's interests take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Tasks whose fields match the rows (any row may match).
    Fields,
    /// Every task (`"*"`).
    Every,
    /// What no other queue takes (`"unrouted"`).
    Unrouted,
}

impl Takes {
    pub fn as_str(self) -> &'static str {
        match self {
            Takes::Fields => "fields",
            Takes::Every => "every",
            Takes::Unrouted => "unrouted",
        }
    }
}

/// The operators a row offers: (value, label).
pub const OPERATORS: [(&str, &str); 8] = [
    ("regex", "regex"),
    ("prefix", "starts with"),
    ("suffix", "ends with"),
    ("equalsIgnoreCase", "equals (any case)"),
    ("anythingBut", "none of (a, b)"),
    ("numeric", "number (>= 10 < 20)"),
    ("exists", "exists (true, false)"),
    ("cidr", "address in (10.0.0.0/8)"),
];

/// One field's pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub field: String,
    pub op: String,
    pub value: String,
    /// What is wrong with it, after a refused save.
    pub error: Option<String>,
}

/// Blank rows offered below the filled ones.
const SPARE_ROWS: usize = 3;

/// The rows (and what the interests take) that say `interests`; `None` when
/// rows cannot say them.
pub fn rows_of(interests: &Value) -> Option<(Takes, Vec<Row>)> {
    let rows = match interests {
        Value::String(s) if s == "*" => return Some((Takes::Every, with_spares(Vec::new()))),
        Value::String(s) if s == "unrouted" => {
            return Some((Takes::Unrouted, with_spares(Vec::new())))
        }
        Value::Object(fields) => fields
            .iter()
            .map(|(field, pattern)| row_of(field, pattern))
            .collect::<Option<Vec<Row>>>()?,
        _ => return None,
    };
    Some((Takes::Fields, with_spares(rows)))
}

/// Rows with the spare blank ones after them.
pub fn with_spares(mut rows: Vec<Row>) -> Vec<Row> {
    rows.extend(
        std::iter::repeat_with(|| Row {
            op: "regex".into(),
            ..Row::default()
        })
        .take(SPARE_ROWS),
    );
    rows
}

fn row_of(field: &str, pattern: &Value) -> Option<Row> {
    let row = |op: &str, value: String| {
        Some(Row {
            field: field.to_owned(),
            op: op.to_owned(),
            value,
            error: None,
        })
    };
    match pattern {
        Value::String(regex) => row("regex", regex.clone()),
        Value::Object(o) if o.len() == 1 => {
            let (op, v) = o.iter().next()?;
            match (op.as_str(), v) {
                ("prefix" | "suffix" | "equalsIgnoreCase" | "cidr", Value::String(s)) => {
                    row(op, s.clone())
                }
                ("exists", Value::Bool(b)) => row(op, b.to_string()),
                ("numeric", Value::Array(terms)) => {
                    let words: Option<Vec<String>> = terms
                        .iter()
                        .map(|t| match t {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect();
                    row(op, words?.join(" "))
                }
                ("anythingBut", Value::Array(items)) => {
                    let words: Option<Vec<&str>> = items
                        .iter()
                        .map(|i| i.as_str().filter(|s| !s.contains(',')))
                        .collect();
                    row(op, words?.join(", "))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The interests the rows say; `Err` is the row at fault (its index) and
/// why, or why the whole (no index).
pub fn interests_of(takes: Takes, rows: &[Row]) -> Result<Value, (Option<usize>, String)> {
    match takes {
        Takes::Every => return Ok(json!("*")),
        Takes::Unrouted => return Ok(json!("unrouted")),
        Takes::Fields => {}
    }
    let mut fields = Map::new();
    for (i, r) in rows.iter().enumerate() {
        let field = r.field.trim();
        if field.is_empty() {
            if !r.value.trim().is_empty() {
                return Err((Some(i), "name the field this pattern is for".into()));
            }
            continue;
        }
        if fields.contains_key(field) {
            return Err((Some(i), format!("`{field}` has a row already")));
        }
        let pattern = pattern_of(&r.op, &r.value).map_err(|why| (Some(i), why))?;
        fields.insert(field.to_owned(), pattern);
    }
    if fields.is_empty() {
        return Err((
            None,
            "give at least one field and pattern, or choose every task".into(),
        ));
    }
    Ok(Value::Object(fields))
}

fn pattern_of(op: &str, value: &str) -> Result<Value, String> {
    // A regex is taken exactly as typed: spaces may be part of it.
    let trimmed = value.trim();
    Ok(match op {
        "regex" => Value::String(value.to_owned()),
        "prefix" | "suffix" | "equalsIgnoreCase" | "cidr" => json!({ op: trimmed }),
        "exists" => match trimmed {
            "" | "true" => json!({"exists": true}),
            "false" => json!({"exists": false}),
            other => return Err(format!("exists is true or false, not `{other}`")),
        },
        "anythingBut" => {
            let items: Vec<&str> = trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            json!({ "anythingBut": items })
        }
        "numeric" => {
            let mut terms = Vec::new();
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            if words.is_empty() || !words.len().is_multiple_of(2) {
                return Err("a comparison and a number, once or twice: like `>= 10 < 20`".into());
            }
            for pair in words.chunks(2) {
                let n: f64 = pair[1]
                    .parse()
                    .map_err(|_| format!("`{}` is not a number", pair[1]))?;
                terms.push(json!(pair[0]));
                terms.push(json!(n));
            }
            json!({ "numeric": terms })
        }
        other => return Err(format!("`{other}` is not an operator")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(rows: &[Row]) -> Vec<Row> {
        rows.iter()
            .filter(|r| !r.field.is_empty())
            .cloned()
            .collect()
    }

    #[test]
    fn rows_say_what_json_says_and_back() {
        let interests = json!({
            "kind": "^(email|mail)$",
            "path": "C:\\\\temp\\.log",
            "to": {"suffix": "@example.com"},
            "amount": {"numeric": [">=", 10, "<", 20.5]},
            "region": {"anythingBut": ["eu", "us"]},
            "vip": {"exists": true},
            "ip": {"cidr": "10.0.0.0/8"},
        });
        let (takes, rows) = rows_of(&interests).unwrap();
        assert_eq!(takes, Takes::Fields);
        assert_eq!(rows.len(), 7 + SPARE_ROWS);
        let path = rows.iter().find(|r| r.field == "path").unwrap();
        assert_eq!(
            path.value, "C:\\\\temp\\.log",
            "the regex as written, not escaped"
        );
        let amount = rows.iter().find(|r| r.field == "amount").unwrap();
        assert_eq!(
            (amount.op.as_str(), amount.value.as_str()),
            ("numeric", ">= 10 < 20.5")
        );
        let back = interests_of(Takes::Fields, &rows).unwrap();
        assert_eq!(
            back,
            json!({
                "kind": "^(email|mail)$",
                "path": "C:\\\\temp\\.log",
                "to": {"suffix": "@example.com"},
                "amount": {"numeric": [">=", 10.0, "<", 20.5]},
                "region": {"anythingBut": ["eu", "us"]},
                "vip": {"exists": true},
                "ip": {"cidr": "10.0.0.0/8"},
            })
        );
        assert_eq!(rows_of(&json!("*")).map(|r| r.0), Some(Takes::Every));
        assert_eq!(
            rows_of(&json!("unrouted")).map(|r| r.0),
            Some(Takes::Unrouted)
        );
    }

    #[test]
    fn what_rows_cannot_say_is_left_to_json() {
        for interests in [
            json!([{"a": "x"}, {"b": "y"}]),
            json!({"a": ["x", {"prefix": "y"}]}),
            json!({"a": {"prefix": "x", "suffix": "y"}}),
            json!({"a": {"anythingBut": [1, 2]}}),
        ] {
            assert_eq!(rows_of(&interests), None, "{interests}");
        }
    }

    #[test]
    fn a_bad_row_is_named() {
        let row = |field: &str, op: &str, value: &str| Row {
            field: field.into(),
            op: op.into(),
            value: value.into(),
            error: None,
        };
        let err = |rows: &[Row]| interests_of(Takes::Fields, rows).unwrap_err();
        assert_eq!(err(&[row("a", "numeric", ">= ten")]).0, Some(0));
        assert_eq!(
            err(&[row("a", "regex", "x"), row("a", "regex", "y")]).0,
            Some(1)
        );
        assert_eq!(err(&[row("", "regex", "x")]).0, Some(0));
        assert_eq!(err(&[row("a", "exists", "maybe")]).0, Some(0));
        assert_eq!(err(&filled(&with_spares(Vec::new()))).0, None);
        assert_eq!(err(&[row("a", "sideways", "x")]).0, Some(0));
    }
}
