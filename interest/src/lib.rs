//! Interests: which queues want a task.
//!
//! A queue registers *interests*; every published task is routed to each queue
//! whose interests match it, and copied once into each. This crate parses,
//! validates and compiles interests and answers "which queues want this task,
//! and why". It knows nothing of HTTP, storage, time or async runtimes.
//!
//! # Grammar
//!
//! A queue's interests are JSON, one of:
//!
//! - `"*"`: the queue takes every task.
//! - `"unrouted"`: the queue takes every task that no other queue's interests
//!   take (none while a queue takes `"*"`): a dead letter for routing, where
//!   tasks that would be discarded are kept to look at.
//! - an object mapping a *field path* to a *pattern*:
//!   `{"email": "^.*evan.*", "user.id": "^[0-9]+$"}`. A pattern is a regular
//!   expression (a JSON string), an *operator* object, or a list of 1 to 64
//!   of them, any of which may match (`{"region": [{"prefix": "eu-"}, "^uk$"]}`).
//!
//! The operators (one per object; see [`operators`]):
//!
//! | operator | holds when |
//! |---|---|
//! | `{"prefix": "eu-"}`, `{"suffix": ".png"}` | the value's text starts (ends) with it |
//! | `{"equalsIgnoreCase": "order"}` | the text equals it, case aside |
//! | `{"anythingBut": ["test", 0]}` | the field is there and its text is none of these |
//! | `{"numeric": [">=", 10, "<", 20]}` | a number satisfies every comparison (`<`, `<=`, `=`, `>=`, `>`); with `"strings": true` also a string that reads as one |
//! | `{"exists": true}` / `{"exists": false}` | the field is there and not `null` / it is not |
//! | `{"cidr": "10.0.0.0/8"}` | a string is an IP address (v4 or v6) in the network |
//!
//! Prefixes and suffixes join the field's literal automaton, case-blind
//! equality a hash map; none compiles to a regex.
//!
//! - a list of *rules*, each an object of fields that must **all** match
//!   (AND); the queue takes a task when any rule does:
//!   `[{"type": "^order$", "amount": {"numeric": [">", 100]}}, {"vip": {"exists": true}}]`.
//!   The object form is the same as a list of one-field rules. The field
//!   limit counts the fields of every rule.
//!
//! A **field path** names a field of the task's `data` object: a top-level key
//! (`email`), or keys joined by `.` to reach into nested objects (`user.email`).
//! A key that itself contains a dot writes it as `\.`, and a backslash as `\\`
//! (so the JSON string `"a\\.b"` names the top-level key `a.b`). No other escape
//! exists and no segment may be empty. Paths are exact names, never patterns:
//! `email` does not reach `emailAddress`.
//!
//! A **pattern** is a regular expression in the syntax of the `regex` crate,
//! which runs in linear time: no pattern can backtrack catastrophically.
//!
//! # Semantics
//!
//! - A queue matches a task when **any** of its fields matches (OR-wise), or,
//!   with rules, when every field of any one rule does; it then receives the
//!   task once, however many matched.
//! - Matching is unanchored: `van` matches `evan`. A pattern anchors itself with
//!   `^` and `$`, which (without the `m` flag) mean the start and the end of the
//!   whole value.
//! - The value at the path is matched as text: a string as it is; a number or a
//!   boolean as its JSON text (`42`, `4.5`, `true`); an array matches when any of
//!   its string, number or boolean elements matches. `null`, objects, elements
//!   nested in an array's elements, and missing fields never match.
//! - A pattern with a capture named `key`, `"^(?P<key>[a-z]+)-[0-9]+$"`,
//!   gives the copy it routes the captured text as its key (the first such
//!   pattern that matches, in field order; see [`Interests::capture_from`]),
//!   so that a queue keeps one task per tenant under the singular rules. A
//!   capture named `group` gives it its fairness group the same way.
//! - Registering a queue's interests replaces all its previous interests.
//! - A task that no queue matches goes nowhere; the service discards it.
//!
//! # Compiled form
//!
//! [`Matcher::build`] compiles every queue's interests into one immutable
//! router. For each field path, the conditions of all queues are filed
//! together in the structure that answers them cheapest, so each field of
//! a task is looked at once whatever the number of queues: exact values
//! (`^id-42$`), prefixes (`^user\.`, `prefix`) and suffixes (`@x\.com$`,
//! `suffix`) in hash maps (one look-up per distinct length), other literals
//! (`.*evan.*`, `^(eu|us)-west`) in one Aho-Corasick automaton, numeric
//! ranges in an interval tree, networks in a map per prefix length,
//! `equalsIgnoreCase` in a map of lower-cased values, and only patterns with
//! no literal form in `RegexSet`s, grouped so that each group's automaton
//! stays within a bounded cache. Identical conditions are stored once. A
//! task marks the queues it reaches in a bitset of which only the touched
//! words are read, so routing costs what matches, not the number of queues.
//! Each queue keeps its regexes as text: their compiled forms are made
//! together per field, and one queue's alone only to explain a match.
//!
//! [`Router`] takes changes one queue at a time: the queues changed since
//! its base was compiled are compiled apart (a small delta) and the base's
//! old entries for them hidden, so a change costs the delta, not every
//! queue; a service compacts the two off its hot path when the delta grows
//! ([`Router::compacted`], [`Router::rebased`]).
//!
//! # Complexity
//!
//! A pattern whose automaton cannot match in bounded memory (counted
//! repetitions of wide classes, such as `[a-z ]{100}q[a-z ]{200}[0-9]`) is
//! refused when it is registered ([`InterestError::TooComplex`]): one queue's
//! interests must not make every publish slow. A pattern is probed by
//! scanning a value built of the characters it names with a DFA of a 512 KiB
//! cache; one that keeps outgrowing the cache is refused. And a queue's
//! interests together have a budget ([`Limits::max_cost`]): a literal or an
//! operator costs 1, a regex with no literal form the pieces of its
//! automaton; interests over it are refused naming the costliest field
//! ([`InterestError::OverBudget`]), so that one tenant's many heavy
//! alternatives cannot slow everyone's publishes.
//! [`Matcher::route`] returns the matching queues in name order, without
//! duplicates; [`Matcher::explain`] says which field and pattern matched each.
//!
//! ```
//! use interest::{Interests, Limits, Matcher};
//! use serde_json::json;
//!
//! let limits = Limits::default();
//! let emails = Interests::parse("emails", &json!({"email": "^.*evan.*"}), &limits)?;
//! let points = Interests::parse("points", &json!({"action": "^userCreated$"}), &limits)?;
//! let matcher = Matcher::build([("emails", emails), ("points", points)])?;
//!
//! let task = json!({"action": "userCreated", "email": "evan@example.com"});
//! assert_eq!(matcher.route(task.as_object().unwrap()), ["emails", "points"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod classify;
mod complexity;
mod hits;
mod index;
mod interests;
mod literals;
mod matcher;
pub mod operators;
mod path;
mod router;

pub use interests::{
    route_plainly, Alternative, FieldInterest, InterestError, Interests, Limits, UNROUTED,
};
pub use matcher::{BuildError, Explanation, FieldHit, Matcher};
pub use operators::Capture;
pub use path::{FieldPath, PathError};
pub use router::{Router, Sizes};
