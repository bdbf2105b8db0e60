//! Which queues a key may use: names, or patterns with `*` standing for any
//! run of characters (`emails`, `tenant-42.*`). Queue names hold no `*`, so
//! a plain name is never read as a pattern.

use serde::{Deserialize, Serialize};

use super::QueueName;

/// The queues a key is limited to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueFilter(Vec<String>);

/// Why a queue pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a queue name or pattern (queue-name characters and `*`)")]
pub struct QueuePatternError(pub String);

impl QueueFilter {
    pub fn new(patterns: Vec<String>) -> Result<Self, QueuePatternError> {
        for p in &patterns {
            let plain = p.replace('*', "x");
            if p.is_empty() || QueueName::parse(&plain).is_err() {
                return Err(QueuePatternError(p.clone()));
            }
        }
        Ok(Self(patterns))
    }

    /// Whether `queue` is one of these.
    pub fn allows(&self, queue: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), queue.as_bytes()))
    }

    /// Both filters' queues (a key listed twice may use either's).
    pub fn union(mut self, other: &QueueFilter) -> Self {
        for p in &other.0 {
            if !self.0.contains(p) {
                self.0.push(p.clone());
            }
        }
        self
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// `*` matches any run of bytes, every other byte itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let f = QueueFilter::new(vec![
            "emails".into(),
            "tenant-42.*".into(),
            "*-audit".into(),
        ])
        .unwrap();
        assert!(f.allows("emails"));
        assert!(!f.allows("emails2"));
        assert!(f.allows("tenant-42.jobs") && f.allows("tenant-42."));
        assert!(!f.allows("tenant-43.jobs"));
        assert!(f.allows("billing-audit"));
        assert!(QueueFilter::new(vec!["a b".into()]).is_err());
        assert!(QueueFilter::new(vec![String::new()]).is_err());
    }
}
