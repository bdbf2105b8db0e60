//! Which copies a listing shows: the search an operator types (`key`,
//! publisher, a failure reason, a time range, fields of `data`), as plain
//! values that `api`, `web` and the CLI build and the store answers.

use std::fmt;

use serde_json::{Map, Value};

use super::{is_valid_key, Millis, MAX_KEY_BYTES};

/// Conditions a copy must all meet to be listed. The default takes every
/// copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Published with exactly this key.
    pub key: Option<String>,
    /// Published by exactly this publisher.
    pub publisher: Option<String>,
    /// In exactly this fairness group.
    pub group: Option<String>,
    /// Its failure reason holds this text, in any case.
    pub reason: Option<String>,
    /// Published at or after.
    pub since: Option<Millis>,
    /// Published before.
    pub until: Option<Millis>,
    /// Fields of its data, each matching its pattern.
    pub data: Vec<FieldMatch>,
}

impl TaskFilter {
    /// Whether a failure reason (or none) passes.
    pub fn reason_passes(&self, reason: Option<&str>) -> bool {
        match &self.reason {
            None => true,
            Some(want) => {
                reason.is_some_and(|r| r.to_lowercase().contains(want.to_lowercase().as_str()))
            }
        }
    }

    /// Whether a publish time passes the range.
    pub fn time_passes(&self, created_at: Millis) -> bool {
        self.since.is_none_or(|s| created_at >= s) && self.until.is_none_or(|u| created_at < u)
    }

    /// Whether the filter looks into payloads, which the store keeps out of
    /// memory.
    pub fn reads_data(&self) -> bool {
        !self.data.is_empty()
    }

    pub fn data_passes(&self, data: &Map<String, Value>) -> bool {
        self.data.iter().all(|m| m.passes(data))
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What no copy could pass, named by its field: a key no publish may
    /// carry, a time range that ends before it begins.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(key) = &self.key {
            if !is_valid_key(key) {
                return Err((
                    "key",
                    format!("must be 1 to {MAX_KEY_BYTES} bytes without control characters"),
                ));
            }
        }
        if let Some(group) = &self.group {
            if !super::is_valid_group(group) {
                return Err((
                    "group",
                    format!(
                        "must be 1 to {} bytes without control characters",
                        super::MAX_GROUP_BYTES
                    ),
                ));
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if until <= since {
                return Err(("until", "must be after `since`".to_owned()));
            }
        }
        Ok(())
    }
}

/// A field of `data` (a dotted path into nested objects) and the pattern its
/// value must match.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch {
    path: Vec<String>,
    pattern: Glob,
}

/// Why a field condition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatchError(pub String);

impl fmt::Display for FieldMatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest field path and pattern a condition takes, so that a search costs
/// what a typed one does.
pub const MAX_FIELD_MATCH_BYTES: usize = 1024;

impl FieldMatch {
    /// `field` is a dotted path (`order.id`); `pattern` is text with `*` for
    /// any run of characters.
    pub fn new(field: &str, pattern: &str) -> Result<Self, FieldMatchError> {
        if field.len() + pattern.len() > MAX_FIELD_MATCH_BYTES {
            return Err(FieldMatchError(format!(
                "a field and its pattern take at most {MAX_FIELD_MATCH_BYTES} bytes"
            )));
        }
        let path: Vec<String> = field.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(FieldMatchError(format!(
                "`{field}` is not a field: names separated by dots, none empty"
            )));
        }
        Ok(Self {
            path,
            pattern: Glob::new(pattern),
        })
    }

    /// Parses `field=pattern`, as an operator types it.
    pub fn parse(text: &str) -> Result<Self, FieldMatchError> {
        let (field, pattern) = text.split_once('=').ok_or_else(|| {
            FieldMatchError(format!("`{text}` is not `field=pattern` (`email=evan*`)"))
        })?;
        Self::new(field.trim(), pattern)
    }

    pub fn field(&self) -> String {
        self.path.join(".")
    }

    pub fn pattern(&self) -> &str {
        &self.pattern.text
    }

    /// Strings match as they are, numbers and booleans as their JSON text;
    /// a missing field, null, an object or an array never matches.
    pub fn passes(&self, data: &Map<String, Value>) -> bool {
        let mut here = data;
        let (last, parents) = self.path.split_last().expect("a path has a name");
        for name in parents {
            match here.get(name) {
                Some(Value::Object(inner)) => here = inner,
                _ => return false,
            }
        }
        match here.get(last) {
            Some(Value::String(s)) => self.pattern.matches(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => self.pattern.matches(&v.to_string()),
            _ => false,
        }
    }
}

/// Text with `*` standing for any run of characters; everything else is
/// itself, in its case.
#[derive(Debug, Clone, PartialEq)]
struct Glob {
    text: String,
}

impl Glob {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
        }
    }

    fn matches(&self, value: &str) -> bool {
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = value.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            // No star: the whole value.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        // The first match of each middle part leaves the most room for the
        // rest, so the greedy walk finds a match when there is one.
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// A time as an operator gives it: Unix seconds (`1764739200`), or a UTC
/// date and time (`2026-12-03T05:30`, seconds and a `Z` or offset allowed;
/// a space for the `T`), as a form's date-time field sends it.
pub fn parse_time(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a time: Unix seconds, or a UTC date and time like 2026-12-03T05:30"
        )
    };
    if let Ok(secs) = text.parse::<f64>() {
        return Millis::from_secs_f64(secs).ok_or_else(bad);
    }
    let normal = text.replacen(' ', "T", 1);
    let at = chrono::DateTime::parse_from_rfc3339(&normal)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"]
                .iter()
                .find_map(|f| {
                    chrono::NaiveDateTime::parse_from_str(&normal, f)
                        .ok()
                        .or_else(|| {
                            chrono::NaiveDate::parse_from_str(&normal, f)
                                .ok()
                                .and_then(|d| d.and_hms_opt(0, 0, 0))
                        })
                })
                .map(|t| t.and_utc().timestamp_millis())
                .ok_or(())
        })
        .map_err(|_| bad())?;
    u64::try_from(at).map(Millis).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn patterns_match_with_stars_anywhere_and_without_as_the_whole() {
        let cases = [
            ("evan", "evan", true),
            ("evan", "evans", false),
            ("evan*", "evans@x", true),
            ("*@x.org", "a@x.org", true),
            ("*@x.org", "a@x.org.uk", false),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("**", "anything", true),
            ("Evan*", "evan", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(value),
                want,
                "{pattern} ~ {value}"
            );
        }
    }

    #[test]
    fn fields_are_dotted_paths_and_scalars_match_as_text() {
        let d = data(
            json!({"order": {"id": 42, "paid": true}, "email": "evan@x", "tags": ["a"], "n": null}),
        );
        let pass = |f: &str| FieldMatch::parse(f).unwrap().passes(&d);
        assert!(pass("order.id=42"));
        assert!(pass("order.id=4*"));
        assert!(pass("order.paid=true"));
        assert!(pass("email=evan*"));
        assert!(!pass("email=bob*"));
        assert!(!pass("order=*"), "an object never matches");
        assert!(!pass("tags=*"), "an array never matches");
        assert!(!pass("n=*"), "null never matches");
        assert!(!pass("missing=*"));
        assert!(!pass("email.inner=*"), "a path through a string");
    }

    #[test]
    fn bad_conditions_are_refused_saying_why() {
        assert!(FieldMatch::parse("email")
            .unwrap_err()
            .0
            .contains("field=pattern"));
        assert!(FieldMatch::parse("a..b=1")
            .unwrap_err()
            .0
            .contains("none empty"));
        assert!(FieldMatch::parse("=1").is_err());
        let long = "x".repeat(MAX_FIELD_MATCH_BYTES);
        assert!(FieldMatch::parse(&format!("{long}=1")).is_err());
    }

    #[test]
    fn reasons_match_in_any_case_and_times_as_a_half_open_range() {
        let f = TaskFilter {
            reason: Some("Exit Code".into()),
            ..Default::default()
        };
        assert!(f.reason_passes(Some("exit code 3: boom")));
        assert!(!f.reason_passes(Some("timed out")));
        assert!(!f.reason_passes(None));
        let f = TaskFilter {
            since: Some(Millis(10)),
            until: Some(Millis(20)),
            ..Default::default()
        };
        assert!(f.time_passes(Millis(10)));
        assert!(!f.time_passes(Millis(20)));
        assert!(!f.time_passes(Millis(9)));
        assert!(TaskFilter::default().is_empty());
    }

    #[test]
    fn times_are_unix_seconds_or_utc_dates() {
        assert_eq!(parse_time("1764739200"), Ok(Millis(1_764_739_200_000)));
        assert_eq!(parse_time("1764739200.5"), Ok(Millis(1_764_739_200_500)));
        let at = Millis(1_764_739_800_000); // 2025-12-03 05:30 UTC
        assert_eq!(parse_time("2025-12-03T05:30"), Ok(at));
        assert_eq!(parse_time("2025-12-03 05:30:00"), Ok(at));
        assert_eq!(parse_time("2025-12-03T05:30:00Z"), Ok(at));
        assert_eq!(parse_time("2025-12-03T06:30:00+01:00"), Ok(at));
        assert_eq!(parse_time("2025-12-03"), Ok(Millis(1_764_720_000_000)));
        for bad in ["yesterday", "", "-5", "2025-13-03", "1e20"] {
            assert!(
                parse_time(bad).unwrap_err().contains("is not a time"),
                "{bad}"
            );
        }
    }
}
