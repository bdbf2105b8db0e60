//! The search form over a task list: the filters an operator types, read
//! from the page's address (so that a link shares them) into the store's
//! `TaskFilter`, and written back into the list's links.

use serde::Deserialize;

use crate::api::error::ApiError;
use crate::model::{parse_time, FieldMatch, TaskFilter};

/// The search part of a list page's query. Empty fields are no filter.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    /// One `field=pattern` condition on `data`.
    #[serde(default)]
    data: Option<String>,
}

/// A search as the page shows it: the fields as typed, and the filter.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub key: String,
    pub publisher: String,
    pub group: String,
    pub reason: String,
    pub since: String,
    pub until: String,
    pub data: String,
    pub filter: TaskFilter,
}

impl Search {
    /// Reads the search; a bad field is a 400 page naming it.
    pub fn read(q: &SearchQuery) -> Result<Self, ApiError> {
        let field = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_owned();
        let mut s = Search {
            key: field(&q.key),
            publisher: field(&q.publisher),
            group: field(&q.group),
            reason: field(&q.reason),
            since: field(&q.since),
            until: field(&q.until),
            data: field(&q.data),
            filter: TaskFilter::default(),
        };
        let some = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        let time = |name: &str, t: &str| {
            some(t)
                .map(|t| parse_time(&t).map_err(|why| ApiError::invalid(name, why)))
                .transpose()
        };
        let mut filter = TaskFilter {
            key: some(&s.key),
            publisher: some(&s.publisher),
            group: some(&s.group),
            reason: some(&s.reason),
            since: time("since", &s.since)?,
            until: time("until", &s.until)?,
            ..TaskFilter::default()
        };
        if !s.data.is_empty() {
            let m = FieldMatch::parse(&s.data).map_err(|e| ApiError::invalid("data", e.0))?;
            filter.data.push(m);
        }
        filter
            .check()
            .map_err(|(field, why)| ApiError::invalid(field, why))?;
        s.filter = filter;
        Ok(s)
    }

    pub fn is_active(&self) -> bool {
        !self.filter.is_empty()
    }

    /// The search as query parameters, each followed by `&`, to put in the
    /// list's links (pages, tabs, the address a form goes back to).
    pub fn query(&self) -> String {
        let pairs = [
            ("key", &self.key),
            ("publisher", &self.publisher),
            ("group", &self.group),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
            ("data", &self.data),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| serde_urlencoded::to_string([(k, v)]).unwrap_or_default() + "&")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> SearchQuery {
        serde_urlencoded::from_str(&serde_urlencoded::to_string(pairs).unwrap()).unwrap()
    }

    #[test]
    fn an_empty_form_is_no_search_and_a_full_one_comes_back_in_links() {
        let s = Search::read(&q(&[("key", " "), ("data", "")])).unwrap();
        assert!(!s.is_active());
        assert_eq!(s.query(), "");
        let s = Search::read(&q(&[
            ("key", "order-1"),
            ("reason", "Exit code"),
            ("data", "email=evan*"),
            ("since", "2025-12-03T05:30"),
        ]))
        .unwrap();
        assert!(s.is_active());
        assert_eq!(s.filter.reason.as_deref(), Some("Exit code"));
        assert_eq!(
            s.query(),
            "key=order-1&reason=Exit+code&since=2025-12-03T05%3A30&data=email%3Devan*&"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |pairs: &[(&str, &str)]| {
            let e = Search::read(&q(pairs)).unwrap_err();
            e.message
        };
        assert!(field(&[("data", "email")]).contains("`data`"));
        assert!(field(&[("since", "soon")]).contains("`since`"));
        assert!(field(&[("since", "20"), ("until", "10")]).contains("`until`"));
        assert!(field(&[("key", "a\u{7}b")]).contains("`key`"));
    }
}
