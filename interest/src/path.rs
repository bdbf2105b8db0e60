//! Field paths: where in a task's `data` an interest looks.

use std::fmt;

use serde_json::{Map, Value};

/// A path to a field of a task's `data`: one key per level of nesting.
///
/// Written as keys joined by `.` (`user.email`). A key that itself holds a dot
/// writes it as `\.` and a backslash as `\\` (`"a\\.b"` in JSON is the top-level
/// key `a.b`). No other escape exists, and no segment may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath {
    text: Box<str>,
    /// The keys, when they are not just `text` (nested, or escaped).
    segments: Option<Box<[Box<str>]>>,
}

/// Why a field path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the field path is empty")]
    Empty,
    #[error("the field path has an empty segment (a leading, trailing or doubled `.`)")]
    EmptySegment,
    #[error("the field path has an unknown escape `\\{0}`: only `\\.` and `\\\\` exist")]
    UnknownEscape(char),
    #[error("the field path ends in a lone `\\`")]
    TrailingBackslash,
}

impl FieldPath {
    /// Parses the written form of a path.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('.' | '\\')) => current.push(e),
                    Some(other) => return Err(PathError::UnknownEscape(other)),
                    None => return Err(PathError::TrailingBackslash),
                },
                '.' => {
                    if current.is_empty() {
                        return Err(PathError::EmptySegment);
                    }
                    segments.push(std::mem::take(&mut current));
                }
                c => current.push(c),
            }
        }
        if current.is_empty() {
            return Err(PathError::EmptySegment);
        }
        segments.push(current);
        let plain = segments.len() == 1 && segments[0] == text;
        Ok(Self {
            text: text.into(),
            segments: (!plain).then(|| segments.into_iter().map(String::into_boxed_str).collect()),
        })
    }

    /// The path as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The keys, one per level, with escapes resolved.
    pub fn segments(&self) -> Vec<&str> {
        match &self.segments {
            Some(keys) => keys.iter().map(|k| &**k).collect(),
            None => vec![&self.text],
        }
    }

    /// The value at this path, if every level exists.
    pub fn resolve<'a>(&self, data: &'a Map<String, Value>) -> Option<&'a Value> {
        let Some(keys) = &self.segments else {
            return data.get(&*self.text);
        };
        let (first, rest) = keys.split_first()?;
        let mut value = data.get(&**first)?;
        for key in rest {
            value = value.as_object()?.get(&**key)?;
        }
        Some(value)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Calls `f` with the text of each matchable value at `value`: a string as it is,
/// a number or boolean as its JSON text, each such element of an array. `null`,
/// objects and anything nested inside an array's elements never match.
pub(crate) fn for_each_text(value: &Value, mut f: impl FnMut(&str)) {
    fn scalar(value: &Value, f: &mut impl FnMut(&str)) {
        match value {
            Value::String(s) => f(s),
            Value::Number(n) => f(&n.to_string()),
            Value::Bool(true) => f("true"),
            Value::Bool(false) => f("false"),
            Value::Null | Value::Array(_) | Value::Object(_) => {}
        }
    }
    match value {
        Value::Array(items) => items.iter().for_each(|item| scalar(item, &mut f)),
        other => scalar(other, &mut f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_and_nested_paths() {
        assert_eq!(FieldPath::parse("email").unwrap().segments(), ["email"]);
        assert_eq!(
            FieldPath::parse("user.email").unwrap().segments(),
            ["user", "email"]
        );
    }

    #[test]
    fn escaped_dots_and_backslashes_stay_in_their_key() {
        assert_eq!(FieldPath::parse(r"a\.b").unwrap().segments(), ["a.b"]);
        assert_eq!(FieldPath::parse(r"a\\.b").unwrap().segments(), [r"a\", "b"]);
    }

    #[test]
    fn malformed_paths_are_rejected() {
        assert_eq!(FieldPath::parse(""), Err(PathError::Empty));
        assert_eq!(FieldPath::parse(".a"), Err(PathError::EmptySegment));
        assert_eq!(FieldPath::parse("a."), Err(PathError::EmptySegment));
        assert_eq!(FieldPath::parse("a..b"), Err(PathError::EmptySegment));
        assert_eq!(FieldPath::parse(r"a\x"), Err(PathError::UnknownEscape('x')));
        assert_eq!(FieldPath::parse(r"a\"), Err(PathError::TrailingBackslash));
    }

    #[test]
    fn resolve_walks_objects_only() {
        let data = json!({"user": {"email": "e@x", "tags": ["a"]}, "a.b": 1});
        let data = data.as_object().unwrap();
        let at = |p: &str| FieldPath::parse(p).unwrap().resolve(data).cloned();
        assert_eq!(at("user.email"), Some(json!("e@x")));
        assert_eq!(at(r"a\.b"), Some(json!(1)));
        assert_eq!(at("a.b"), None);
        assert_eq!(at("user.tags.0"), None);
        assert_eq!(at("missing"), None);
    }

    #[test]
    fn texts_of_scalars_and_arrays() {
        let mut seen = Vec::new();
        for v in [
            json!("s"),
            json!(12.5),
            json!(true),
            json!(null),
            json!({"a": 1}),
            json!(["x", 2, null, ["nested"], false]),
        ] {
            for_each_text(&v, |t| seen.push(t.to_owned()));
        }
        assert_eq!(seen, ["s", "12.5", "true", "x", "2", "false"]);
    }
}
