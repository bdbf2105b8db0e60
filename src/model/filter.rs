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
    /// Published after this copy (ids are in publish order): the cursor of
    /// the next page, the last id of the one before.
    pub after: Option<super::TaskId>,
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
        scalar_text(data, self.path.iter().map(String::as_str))
            .is_some_and(|text| self.pattern.matches(&text))
    }

    /// What a copy's search fields (see `search_fields_of`) say of this
    /// condition: whether it passes, or `None` when its field is not among
    /// them (the payload must be read).
    pub fn answer<P: AsRef<str>, V: AsRef<str>>(&self, fields: &[(P, Option<V>)]) -> Option<bool> {
        let (_, text) = fields
            .iter()
            .find(|(path, _)| dotted_eq(path.as_ref(), &self.path))?;
        Some(
            text.as_ref()
                .is_some_and(|t| self.pattern.matches(t.as_ref())),
        )
    }
}

/// Whether `dotted` is the path `names` joined by dots.
fn dotted_eq(dotted: &str, names: &[String]) -> bool {
    let mut rest = dotted;
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            let Some(r) = rest.strip_prefix('.') else {
                return false;
            };
            rest = r;
        }
        let Some(r) = rest.strip_prefix(name.as_str()) else {
            return false;
        };
        rest = r;
    }
    rest.is_empty()
}

/// The text a condition matches at a dotted path: a string as it is, a
/// number or a boolean as its JSON text; nothing for a missing field, null,
/// an object or an array.
fn scalar_text<'d, 'p>(
    data: &'d Map<String, Value>,
    mut path: impl Iterator<Item = &'p str>,
) -> Option<std::borrow::Cow<'d, str>> {
    let mut here = data;
    let mut name = path.next()?;
    for next in path {
        match here.get(name) {
            Some(Value::Object(inner)) => here = inner,
            _ => return None,
        }
        name = next;
    }
    match here.get(name)? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(std::borrow::Cow::Owned(v.to_string())),
        _ => None,
    }
}

/// Most fields of `data` a queue keeps for searches.
pub const MAX_SEARCH_FIELDS: usize = 8;

/// Longest value kept for a search field: a longer one is left out of the
/// copy's fields, and a search on it reads the payload.
pub const MAX_SEARCH_VALUE_BYTES: usize = 256;

/// A queue's search fields as a copy keeps them: each dotted path with the
/// text a condition matches there (`None`: nothing can match). A value longer
/// than `MAX_SEARCH_VALUE_BYTES` is left out.
pub fn search_fields_of(
    data: &Map<String, Value>,
    fields: &[String],
) -> Vec<(Box<str>, Option<Box<str>>)> {
    fields
        .iter()
        .filter_map(|field| {
            let text = scalar_text(data, field.split('.'));
            match text {
                Some(t) if t.len() > MAX_SEARCH_VALUE_BYTES => None,
                t => Some((field.as_str().into(), t.map(|t| t.into()))),
            }
        })
        .collect()
}

/// Checks a queue's search fields: at most `MAX_SEARCH_FIELDS` distinct
/// dotted paths, each as a search condition takes it.
pub fn check_search_fields(fields: &[String]) -> Result<(), String> {
    if fields.len() > MAX_SEARCH_FIELDS {
        return Err(format!("at most {MAX_SEARCH_FIELDS} fields"));
    }
    for (i, field) in fields.iter().enumerate() {
        if field.len() > 200 || field.split('.').any(str::is_empty) {
            return Err(format!(
                "`{field}` is not a field: names separated by dots, none empty, at most 200 bytes"
            ));
        }
        if fields[..i].contains(field) {
            return Err(format!("`{field}` is given twice"));
        }
    }
    Ok(())
}

/// Text with `*` standing for any run of characters; everything else is
/// itself, in its case.
#[derive(Debug, Clone, PartialEq)]
struct Glob {
    text: String,
    /// The text between stars, split once: a search matches it against
    /// every copy it steps through.
    parts: Vec<String>,
}

impl Glob {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            parts: text.split('*').map(str::to_owned).collect(),
        }
    }

    fn matches(&self, value: &str) -> bool {
        let (first, parts) = self.parts.split_first().expect("split gives one part");
        let Some(mut rest) = value.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = parts.split_last() else {
            // No star: the whole value.
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part.as_str()) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        // The first match of each middle part leaves the most room for the
        // rest, so the greedy walk finds a match when there is one.
        rest.len() >= last.len() && rest.ends_with(last.as_str())
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
    fn search_fields_answer_a_condition_as_the_payload_would() {
        let d = data(json!({"order": {"id": 42, "paid": true}, "email": "evan@x",
            "tags": ["a"], "n": null, "long": "x".repeat(MAX_SEARCH_VALUE_BYTES + 1)}));
        let paths = [
            "order.id",
            "order.paid",
            "email",
            "tags",
            "n",
            "missing",
            "long",
            "email.inner",
        ];
        let fields = search_fields_of(&d, &paths.map(String::from));
        assert!(
            !fields.iter().any(|(p, _)| &**p == "long"),
            "a long value is left out"
        );
        for cond in [
            "order.id=42",
            "order.id=4*",
            "order.id=5",
            "order.paid=true",
            "email=evan*",
            "email=*@y",
            "tags=*",
            "n=*",
            "missing=*",
            "email.inner=*",
        ] {
            let c = FieldMatch::parse(cond).unwrap();
            assert_eq!(c.answer(&fields), Some(c.passes(&d)), "{cond}");
        }
        for cond in ["long=x*", "order=*", "other=1", "order.id.x=1", "orde=*"] {
            assert_eq!(
                FieldMatch::parse(cond).unwrap().answer(&fields),
                None,
                "{cond}"
            );
        }
        assert!(check_search_fields(&["a".into(), "b.c".into()]).is_ok());
        assert!(check_search_fields(&["a".into(), "a".into()])
            .unwrap_err()
            .contains("twice"));
        assert!(check_search_fields(&["a..b".into()])
            .unwrap_err()
            .contains("none empty"));
        assert!(check_search_fields(&vec!["x".to_owned(); 9])
            .unwrap_err()
            .contains("at most"));
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
