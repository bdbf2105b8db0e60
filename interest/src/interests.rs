//! One queue's interests: parsed, validated, each pattern compiled on its own.

use regex::{Regex, RegexBuilder};

use crate::operators::Pattern;
use serde_json::{Map, Value};

use crate::operators::{parse_operator, Capture, Condition, MAX_ALTERNATIVES};
use crate::path::{FieldPath, PathError};

/// Bounds on what one queue may register, so that one request cannot make the
/// matcher slow or large for everybody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fields one queue may list.
    pub max_fields: usize,
    /// Bytes of one pattern's source text.
    pub max_pattern_len: usize,
    /// Bytes one compiled pattern may take (the `regex` crate's `size_limit`).
    pub max_compiled_size: usize,
    /// What one queue's interests may cost to match, summed over every
    /// alternative of every field: a literal or an operator costs 1 (an
    /// `anythingBut`, one per value), a regex with no literal form the
    /// size of its automaton's pieces (a character, a class's ranges,
    /// times a repetition's count).
    pub max_cost: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_fields: 32,
            max_pattern_len: 1024,
            max_compiled_size: 1 << 20,
            max_cost: 16_384,
        }
    }
}

/// Why a queue's interests were refused. Each names the queue, and the field
/// when one is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    #[error("queue name is empty")]
    EmptyQueueName,
    #[error("queue `{queue}`: interests must be \"*\", \"unrouted\", an object mapping fields to patterns (any may match), or a list of such objects (rules: all of a rule's fields must match)")]
    NotAnObject { queue: String },
    #[error("queue `{queue}`: interests list no field; use \"*\" to take every task")]
    NoFields { queue: String },
    #[error("queue `{queue}`: {count} fields is more than the limit of {max}")]
    TooManyFields {
        queue: String,
        count: usize,
        max: usize,
    },
    #[error("queue `{queue}`: field `{field}`: {source}")]
    InvalidField {
        queue: String,
        field: String,
        source: PathError,
    },
    #[error("queue `{queue}`: field `{field}`: the pattern must be a string (a regular expression), an operator object or a list of 1 to {max} of them", max = crate::operators::MAX_ALTERNATIVES)]
    PatternNotString { queue: String, field: String },
    #[error("queue `{queue}`: field `{field}`: {}{message}", if operator.is_empty() { String::new() } else { format!("operator `{operator}`: ") })]
    InvalidOperator {
        queue: String,
        field: String,
        operator: String,
        message: String,
    },
    #[error(
        "queue `{queue}`: field `{field}`: the pattern is {len} bytes, over the limit of {max}"
    )]
    PatternTooLong {
        queue: String,
        field: String,
        len: usize,
        max: usize,
    },
    #[error(
        "queue `{queue}`: field `{field}`: the compiled pattern is over the limit of {max} bytes"
    )]
    CompiledTooLarge {
        queue: String,
        field: String,
        max: usize,
    },
    #[error("queue `{queue}`: field `{field}`: invalid regular expression: {message}")]
    InvalidRegex {
        queue: String,
        field: String,
        message: String,
    },
    #[error("queue `{queue}`: field `{field}`: the pattern is too complex to match in bounded time (its automaton outgrows its cache); use fewer or smaller counted repetitions of wide classes")]
    TooComplex { queue: String, field: String },
    #[error("queue `{queue}`: field `{field}`: these interests cost {cost} to match, over the limit of {max}, and this field the most; use literals, prefixes or operators instead of wide classes and long repetitions, or fewer alternatives")]
    OverBudget {
        queue: String,
        field: String,
        cost: usize,
        max: usize,
    },
}

impl InterestError {
    /// The field at fault, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::EmptyQueueName
            | Self::NotAnObject { .. }
            | Self::NoFields { .. }
            | Self::TooManyFields { .. } => None,
            Self::InvalidField { field, .. }
            | Self::PatternNotString { field, .. }
            | Self::InvalidOperator { field, .. }
            | Self::PatternTooLong { field, .. }
            | Self::CompiledTooLarge { field, .. }
            | Self::InvalidRegex { field, .. }
            | Self::TooComplex { field, .. }
            | Self::OverBudget { field, .. } => Some(field),
        }
    }
}

/// One field's interest: where to look, and what must hold there (any of
/// its alternatives).
#[derive(Debug, Clone)]
pub struct FieldInterest {
    path: FieldPath,
    alternatives: Vec<Alternative>,
    /// Registered as a list (of one or more), not as one alternative.
    listed: bool,
}

/// One condition of a field.
#[derive(Debug, Clone)]
pub struct Alternative {
    pub condition: Condition,
    /// An operator object as registered, in JSON; `None` for a regex.
    operator: Option<Box<str>>,
    /// What it costs to match (see [`Limits::max_cost`]).
    cost: u32,
}

impl Alternative {
    /// The condition as shown in explanations: the regex's source, or the
    /// operator object as JSON.
    pub fn shown(&self) -> &str {
        match (&self.operator, &self.condition) {
            (Some(json), _) => json,
            (None, Condition::Regex(p)) => p.as_str(),
            (None, _) => "",
        }
    }

    /// The JSON form, as registered.
    fn to_json(&self) -> Value {
        match &self.operator {
            Some(json) => serde_json::from_str(json).expect("an operator's own JSON parses"),
            None => Value::String(self.shown().to_owned()),
        }
    }
}

impl FieldInterest {
    /// Where in `data` this interest looks.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// What must hold at the path: any of these.
    pub fn alternatives(&self) -> &[Alternative] {
        &self.alternatives
    }

    /// The first alternative that holds for the value at the path, with the
    /// text that matched.
    pub fn matching(&self, data: &Map<String, Value>) -> Option<(&Alternative, String)> {
        let value = self.path.resolve(data);
        self.alternatives
            .iter()
            .find_map(|a| a.condition.matches(value).map(|hit| (a, hit)))
    }

    /// Whether any alternative holds for the value found at the path; the
    /// text that matched.
    pub fn matches(&self, data: &Map<String, Value>) -> Option<String> {
        self.matching(data).map(|(_, hit)| hit)
    }
}

/// A queue's interests: every task, or the tasks where any listed field matches.
#[derive(Debug, Clone)]
pub enum Interests {
    /// `"*"`: every task.
    All,
    /// `"unrouted"`: every task that no other queue's interests take (a
    /// dead letter for routing).
    Unrouted,
    /// Field paths to patterns, matched OR-wise, in the order of their paths.
    Fields(Vec<FieldInterest>),
    /// Rules matched OR-wise, each a set of fields that must all match
    /// (AND), in the order given.
    Rules(Vec<Vec<FieldInterest>>),
}

impl Interests {
    /// Parses the JSON form: the string `"*"`, or an object of field path to
    /// pattern text.
    pub fn parse(queue: &str, value: &Value, limits: &Limits) -> Result<Self, InterestError> {
        if queue.is_empty() {
            return Err(InterestError::EmptyQueueName);
        }
        let not_an_object = || InterestError::NotAnObject {
            queue: queue.to_owned(),
        };
        let object = match value {
            Value::String(s) if s == "*" => return Ok(Self::All),
            Value::String(s) if s == UNROUTED => return Ok(Self::Unrouted),
            Value::Object(object) => object,
            Value::Array(rules) => {
                let objects: Vec<&Map<String, Value>> = rules
                    .iter()
                    .map(|r| {
                        r.as_object()
                            .filter(|o| !o.is_empty())
                            .ok_or_else(not_an_object)
                    })
                    .collect::<Result<_, _>>()?;
                let count = objects.iter().map(|o| o.len()).sum();
                check_count(queue, count, limits)?;
                let mut parsed = Vec::with_capacity(objects.len());
                for object in objects {
                    parsed.push(parse_fields(queue, object, limits)?);
                }
                check_cost(queue, parsed.iter().flatten(), limits)?;
                return Ok(Self::Rules(parsed));
            }
            _ => return Err(not_an_object()),
        };
        check_count(queue, object.len(), limits)?;
        let fields = parse_fields(queue, object, limits)?;
        check_cost(queue, fields.iter(), limits)?;
        Ok(Self::Fields(fields))
    }

    /// The JSON form, as `parse` accepts it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::All => Value::String("*".to_owned()),
            Self::Unrouted => Value::String(UNROUTED.to_owned()),
            Self::Fields(fields) => fields_json(fields),
            Self::Rules(rules) => Value::Array(rules.iter().map(|r| fields_json(r)).collect()),
        }
    }

    /// Whether a match may give the copy `capture`: some pattern has a
    /// capture of that name.
    pub fn sets(&self, capture: Capture) -> bool {
        self.fields().any(|f| {
            f.alternatives
                .iter()
                .any(|a| matches!(&a.condition, Condition::Regex(p) if p.has(capture)))
        })
    }

    /// The text of `capture` these interests take from the task: from the
    /// first pattern, in field order, that matches with it.
    pub fn capture_from(&self, capture: Capture, data: &Map<String, Value>) -> Option<String> {
        self.fields().find_map(|f| {
            let value = f.path.resolve(data)?;
            f.alternatives.iter().find_map(|a| match &a.condition {
                Condition::Regex(p) if p.has(capture) => {
                    let mut found = None;
                    crate::path::for_each_text(value, |text| {
                        if found.is_none() {
                            found = p.capture_in(capture, text);
                        }
                    });
                    found
                }
                _ => None,
            })
        })
    }

    fn fields(&self) -> impl Iterator<Item = &FieldInterest> {
        let (fields, rules): (&[FieldInterest], &[Vec<FieldInterest>]) = match self {
            Self::All | Self::Unrouted => (&[], &[]),
            Self::Fields(fields) => (fields, &[]),
            Self::Rules(rules) => (&[], rules),
        };
        fields.iter().chain(rules.iter().flatten())
    }

    /// Whether these interests take the task: the plain, uncompiled rule that
    /// the `Matcher` must agree with. `Unrouted` depends on the other
    /// queues' interests, not on the task alone: false here (see
    /// [`route_plainly`]).
    pub fn matches(&self, data: &Map<String, Value>) -> bool {
        match self {
            Self::All => true,
            Self::Unrouted => false,
            Self::Fields(fields) => fields.iter().any(|f| f.matches(data).is_some()),
            Self::Rules(rules) => rules
                .iter()
                .any(|rule| rule.iter().all(|f| f.matches(data).is_some())),
        }
    }
}

fn fields_json(fields: &[FieldInterest]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| {
                let json = if f.listed {
                    Value::Array(f.alternatives.iter().map(Alternative::to_json).collect())
                } else {
                    f.alternatives[0].to_json()
                };
                (f.path.as_str().to_owned(), json)
            })
            .collect(),
    )
}

/// Refuses interests over `max_cost`, naming the field that costs the most.
fn check_cost<'f>(
    queue: &str,
    fields: impl Iterator<Item = &'f FieldInterest>,
    limits: &Limits,
) -> Result<(), InterestError> {
    let mut total = 0usize;
    let mut costliest: Option<(usize, &FieldInterest)> = None;
    for f in fields {
        let cost = f
            .alternatives
            .iter()
            .map(|a| a.cost as usize)
            .fold(0, usize::saturating_add);
        total = total.saturating_add(cost);
        if costliest.is_none_or(|(c, _)| cost > c) {
            costliest = Some((cost, f));
        }
    }
    match costliest {
        Some((_, f)) if total > limits.max_cost => Err(InterestError::OverBudget {
            queue: queue.to_owned(),
            field: f.path.as_str().to_owned(),
            cost: total,
            max: limits.max_cost,
        }),
        _ => Ok(()),
    }
}

fn check_count(queue: &str, count: usize, limits: &Limits) -> Result<(), InterestError> {
    if count == 0 {
        return Err(InterestError::NoFields {
            queue: queue.to_owned(),
        });
    }
    if count > limits.max_fields {
        return Err(InterestError::TooManyFields {
            queue: queue.to_owned(),
            count,
            max: limits.max_fields,
        });
    }
    Ok(())
}

/// One object's fields, in the order of their paths.
fn parse_fields(
    queue: &str,
    object: &Map<String, Value>,
    limits: &Limits,
) -> Result<Vec<FieldInterest>, InterestError> {
    let mut fields = Vec::with_capacity(object.len());
    for (field, pattern) in object {
        fields.push(parse_field(queue, field, pattern, limits)?);
    }
    fields.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(fields)
}

/// The interests of a queue that takes what no other queue takes.
pub const UNROUTED: &str = "unrouted";

/// The queues of `queues` that take the task, in their order, by the plain
/// rules: those whose interests match; when none does, those that take what
/// no other queue takes. What the `Matcher` must agree with.
pub fn route_plainly<'a, S: AsRef<str>>(
    queues: &'a [(S, Interests)],
    data: &Map<String, Value>,
) -> Vec<&'a str> {
    let wanted: Vec<&str> = queues
        .iter()
        .filter(|(_, i)| i.matches(data))
        .map(|(n, _)| n.as_ref())
        .collect();
    if !wanted.is_empty() {
        return wanted;
    }
    queues
        .iter()
        .filter(|(_, i)| matches!(i, Interests::Unrouted))
        .map(|(n, _)| n.as_ref())
        .collect()
}

fn parse_field(
    queue: &str,
    field: &str,
    pattern: &Value,
    limits: &Limits,
) -> Result<FieldInterest, InterestError> {
    let path = FieldPath::parse(field).map_err(|source| InterestError::InvalidField {
        queue: queue.to_owned(),
        field: field.to_owned(),
        source,
    })?;
    let one = |v: &Value| parse_alternative(queue, field, v, limits);
    let listed = pattern.is_array();
    let alternatives = match pattern {
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_ALTERNATIVES => items
            .iter()
            .map(|item| match item {
                Value::Array(_) => Err(InterestError::PatternNotString {
                    queue: queue.to_owned(),
                    field: field.to_owned(),
                }),
                other => one(other),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Array(_) => {
            return Err(InterestError::PatternNotString {
                queue: queue.to_owned(),
                field: field.to_owned(),
            })
        }
        other => vec![one(other)?],
    };
    Ok(FieldInterest {
        path,
        alternatives,
        listed,
    })
}

fn parse_alternative(
    queue: &str,
    field: &str,
    pattern: &Value,
    limits: &Limits,
) -> Result<Alternative, InterestError> {
    let pattern = match pattern {
        Value::String(p) => p,
        Value::Object(object) => {
            let condition = parse_operator(object, limits.max_pattern_len).map_err(|e| {
                InterestError::InvalidOperator {
                    queue: queue.to_owned(),
                    field: field.to_owned(),
                    operator: e.operator,
                    message: e.message,
                }
            })?;
            let cost = match &condition {
                Condition::AnythingBut(values) => values.len(),
                _ => 1,
            };
            return Ok(Alternative {
                condition,
                operator: Some(pattern.to_string().into()),
                cost: cost as u32,
            });
        }
        _ => {
            return Err(InterestError::PatternNotString {
                queue: queue.to_owned(),
                field: field.to_owned(),
            })
        }
    };
    if pattern.len() > limits.max_pattern_len {
        return Err(InterestError::PatternTooLong {
            queue: queue.to_owned(),
            field: field.to_owned(),
            len: pattern.len(),
            max: limits.max_pattern_len,
        });
    }
    let compiled = compile(pattern, limits.max_compiled_size).map_err(|e| match e {
        regex::Error::CompiledTooBig(_) => InterestError::CompiledTooLarge {
            queue: queue.to_owned(),
            field: field.to_owned(),
            max: limits.max_compiled_size,
        },
        other => InterestError::InvalidRegex {
            queue: queue.to_owned(),
            field: field.to_owned(),
            message: other.to_string(),
        },
    })?;
    let cost = match crate::classify::literal_form(pattern) {
        Some(form) => form.literals.len(),
        None if !crate::complexity::pattern_well_behaved(pattern) => {
            return Err(InterestError::TooComplex {
                queue: queue.to_owned(),
                field: field.to_owned(),
            })
        }
        None => crate::complexity::weight(pattern),
    };
    Ok(Alternative {
        condition: Condition::Regex(Pattern::checked(pattern, &compiled)),
        operator: None,
        cost: cost.min(u32::MAX as usize) as u32,
    })
}

pub(crate) fn compile(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(size_limit).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Interests, InterestError> {
        Interests::parse("q", &value, &Limits::default())
    }

    #[test]
    fn unrouted_takes_only_what_no_other_queue_takes() {
        let parsed = parse(json!("unrouted")).unwrap();
        assert!(matches!(parsed, Interests::Unrouted));
        assert_eq!(parsed.to_json(), json!("unrouted"));
        let queues = vec![
            ("emails", parse(json!({"to": "@"})).unwrap()),
            ("lost", parsed.clone()),
            ("lost-too", parsed),
        ];
        let to = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            route_plainly(&queues, &to(json!({"to": "a@b"}))),
            ["emails"]
        );
        assert_eq!(
            route_plainly(&queues, &to(json!({"x": 1}))),
            ["lost", "lost-too"]
        );
    }

    #[test]
    fn operators_and_lists_parse_round_trip_and_match_any_alternative() {
        let value = json!({
            "region": [{"prefix": "eu-"}, "^us-east-1$"],
            "amount": {"numeric": [">", 100]},
            "ip": {"cidr": "10.0.0.0/8"},
        });
        let interests = parse(value.clone()).unwrap();
        assert_eq!(interests.to_json(), value);
        let to = |v: Value| v.as_object().unwrap().clone();
        assert!(interests.matches(&to(json!({"region": "eu-west-2"}))));
        assert!(interests.matches(&to(json!({"region": "us-east-1"}))));
        assert!(interests.matches(&to(json!({"amount": 101}))));
        assert!(interests.matches(&to(json!({"ip": "10.9.9.9"}))));
        assert!(!interests.matches(&to(
            json!({"region": "ap-1", "amount": 100, "ip": "11.0.0.1"})
        )));
        let Interests::Fields(fields) = &interests else {
            panic!("fields")
        };
        let region = fields
            .iter()
            .find(|f| f.path().as_str() == "region")
            .unwrap();
        let (alt, hit) = region.matching(&to(json!({"region": "eu-1"}))).unwrap();
        assert_eq!((alt.shown(), hit.as_str()), (r#"{"prefix":"eu-"}"#, "eu-1"));
    }

    #[test]
    fn a_list_of_rules_takes_a_task_when_every_field_of_one_rule_matches() {
        let value = json!([
            {"type": "^order$", "amount": {"numeric": [">", 100]}},
            {"vip": {"exists": true}},
        ]);
        let interests = parse(value.clone()).unwrap();
        assert_eq!(interests.to_json(), value);
        let to = |v: Value| v.as_object().unwrap().clone();
        assert!(interests.matches(&to(json!({"type": "order", "amount": 150}))));
        assert!(!interests.matches(&to(json!({"type": "order", "amount": 50}))));
        assert!(!interests.matches(&to(json!({"amount": 150}))));
        assert!(interests.matches(&to(json!({"vip": 1}))));
        for bad in [json!([]), json!([{}]), json!(["*"]), json!([{"a": "x"}, 3])] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        // The field limit counts every rule's fields.
        let limits = Limits {
            max_fields: 2,
            ..Limits::default()
        };
        let three = json!([{"a": "x", "b": "x"}, {"c": "x"}]);
        assert!(matches!(
            Interests::parse("q", &three, &limits),
            Err(InterestError::TooManyFields { count: 3, .. })
        ));
    }

    #[test]
    fn interests_over_their_cost_budget_are_refused_naming_the_costliest_field() {
        let limits = Limits {
            max_cost: 50,
            ..Limits::default()
        };
        let parse = |v: Value| Interests::parse("q", &v, &limits);
        // Literals and operators cost one each.
        let many: Vec<Value> = (0..40).map(|i| json!(format!("^id-{i}$"))).collect();
        assert!(parse(json!({"id": many, "n": {"numeric": [">", 1]}})).is_ok());
        // Wide classes repeated cost their pieces.
        let wide = json!({"id": "^x$", "body": "[a-z]{30}[0-9]{30}", "tag": "[a-f]{20}"});
        let err = parse(wide).unwrap_err();
        assert!(
            matches!(
                err,
                InterestError::OverBudget {
                    cost: 81,
                    max: 50,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.field(), Some("body"));
        assert!(
            err.to_string()
                .contains("cost 81 to match, over the limit of 50"),
            "{err}"
        );
        let rules = json!([{"a": "[a-z]{60}"}, {"b": "[a-z]{50}", "c": "^x$"}]);
        assert_eq!(parse(rules).unwrap_err().field(), Some("a"));
        let but: Vec<Value> = (0..64).map(|i| json!(i)).collect();
        let err =
            parse(json!({"x": [{"anythingBut": but.clone()}, {"anythingBut": but}]})).unwrap_err();
        assert!(
            matches!(err, InterestError::OverBudget { cost: 128, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_capture_named_key_gives_the_copy_its_key() {
        let to = |v: Value| v.as_object().unwrap().clone();
        let keyed =
            parse(json!({"b": "^x$", "tenant": ["^(?P<key>[a-z]+)-[0-9]+$", "^vip$"]})).unwrap();
        assert!(keyed.sets(Capture::Key));
        assert!(!keyed.sets(Capture::Group));
        let key = |v: Value| keyed.capture_from(Capture::Key, &to(v));
        assert_eq!(key(json!({"tenant": "acme-42"})).as_deref(), Some("acme"));
        assert_eq!(
            key(json!({"tenant": ["x", "globex-7"]})).as_deref(),
            Some("globex")
        );
        assert_eq!(key(json!({"tenant": "vip"})), None);
        assert_eq!(key(json!({"b": "x"})), None);
        let plain = parse(json!({"tenant": "^(?P<who>[a-z]+)-"})).unwrap();
        assert!(!plain.sets(Capture::Key));
    }

    #[test]
    fn a_capture_named_group_gives_the_copy_its_group() {
        let to = |v: Value| v.as_object().unwrap().clone();
        let both = parse(json!({"tenant": "^(?P<group>[a-z]+)-(?P<key>[0-9]+)$"})).unwrap();
        assert!(both.sets(Capture::Group) && both.sets(Capture::Key));
        let task = to(json!({"tenant": "acme-42"}));
        assert_eq!(
            both.capture_from(Capture::Group, &task).as_deref(),
            Some("acme")
        );
        assert_eq!(
            both.capture_from(Capture::Key, &task).as_deref(),
            Some("42")
        );
        assert_eq!(
            both.capture_from(Capture::Group, &to(json!({"tenant": "acme"}))),
            None
        );
    }

    #[test]
    fn a_bad_operator_names_queue_field_and_operator() {
        let err = parse(json!({"amount": {"numeric": [">", "lots"]}})).unwrap_err();
        assert_eq!(err.field(), Some("amount"));
        let text = err.to_string();
        assert!(
            text.starts_with("queue `q`: field `amount`: operator `numeric`: "),
            "{text}"
        );
        let err = parse(json!({"a": {"prefx": "x"}})).unwrap_err();
        assert!(err.to_string().contains("operator `prefx`"), "{err}");
        for bad in [
            json!({"a": []}),
            json!({"a": [["x"]]}),
            json!({"a": [1]}),
            json!({"a": null}),
        ] {
            assert!(
                matches!(
                    parse(bad.clone()),
                    Err(InterestError::PatternNotString { .. })
                ),
                "{bad}"
            );
        }
        let many: Vec<Value> = (0..65).map(|i| Value::from(format!("x{i}"))).collect();
        assert!(parse(json!({"a": many})).is_err());
        // A regex inside a list meets the regex limits.
        assert!(matches!(
            parse(json!({"a": ["ok", "(unclosed"]})),
            Err(InterestError::InvalidRegex { .. })
        ));
    }

    #[test]
    fn star_takes_everything() {
        assert!(matches!(parse(json!("*")).unwrap(), Interests::All));
        assert!(parse(json!("*")).unwrap().matches(&Map::new()));
    }

    #[test]
    fn fields_round_trip_through_json() {
        let value = json!({"email": "^.*evan.*", "user.id": "^[0-9]+$"});
        assert_eq!(parse(value.clone()).unwrap().to_json(), value);
        // A list of one stays a list; nested and escaped paths as written.
        let value = json!({"a": ["^x$"], "b": [{"exists": true}, "y"], "c\\.d": "z", "e.f": {"numeric": ["=", 1.5]}});
        assert_eq!(parse(value.clone()).unwrap().to_json(), value);
    }

    #[test]
    fn each_bad_input_has_its_error() {
        let limits = Limits {
            max_fields: 2,
            max_pattern_len: 8,
            max_compiled_size: 1 << 20,
            max_cost: 1000,
        };
        let p = |v: Value| Interests::parse("q", &v, &limits);
        assert_eq!(
            Interests::parse("", &json!("*"), &limits).unwrap_err(),
            InterestError::EmptyQueueName
        );
        assert!(matches!(
            p(json!("all")),
            Err(InterestError::NotAnObject { .. })
        ));
        assert!(matches!(
            p(json!(["a"])),
            Err(InterestError::NotAnObject { .. })
        ));
        assert!(matches!(p(json!({})), Err(InterestError::NoFields { .. })));
        assert!(matches!(
            p(json!({"a": "x", "b": "x", "c": "x"})),
            Err(InterestError::TooManyFields {
                count: 3,
                max: 2,
                ..
            })
        ));
        let err = p(json!({"": "x"})).unwrap_err();
        assert!(matches!(err, InterestError::InvalidField { .. }));
        assert_eq!(err.field(), Some(""));
        assert!(matches!(
            p(json!({"a": 1})),
            Err(InterestError::PatternNotString { .. })
        ));
        assert!(matches!(
            p(json!({"a": "123456789"})),
            Err(InterestError::PatternTooLong { len: 9, max: 8, .. })
        ));
        let err = p(json!({"email": "(unclos"})).unwrap_err();
        assert_eq!(err.field(), Some("email"));
        assert!(
            err.to_string().contains("queue `q`: field `email`"),
            "{err}"
        );
        assert!(err.to_string().contains("unclosed"), "{err}");
    }

    #[test]
    fn compiled_size_limit_is_enforced() {
        let limits = Limits {
            max_compiled_size: 1000,
            ..Limits::default()
        };
        let err = Interests::parse("q", &json!({"a": r"\w{50}"}), &limits).unwrap_err();
        assert!(
            matches!(err, InterestError::CompiledTooLarge { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_pattern_too_complex_to_match_in_bounds_is_refused() {
        let err = parse(json!({"body": "[ab]*a[ab]{20}"})).unwrap_err();
        assert!(matches!(err, InterestError::TooComplex { .. }), "{err}");
        assert_eq!(err.field(), Some("body"));
        assert!(parse(json!({"body": "[a-z]+q[0-9]{3}"})).is_ok());
    }

    #[test]
    fn field_names_are_exact_not_patterns() {
        let interests = parse(json!({"email": ".*"})).unwrap();
        assert!(!interests.matches(json!({"emailAddress": "x"}).as_object().unwrap()));
        assert!(interests.matches(json!({"email": "x"}).as_object().unwrap()));
    }
}
