use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest queue name accepted, in bytes.
pub const MAX_QUEUE_NAME_LEN: usize = 128;

/// A task copy's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

/// A registered worker's id: a UUIDv7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(Uuid);

/// Why an id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an id (a UUID such as 0190e0b4-6c1e-7cc0-a3f4-1d2e3f405162)")]
pub struct IdError(pub String);

macro_rules! uuid_id {
    ($name:ident) => {
        impl $name {
            /// A new id, ordered after every id made before it on this node.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The 16 bytes of the id, which sort in creation order.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| IdError(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(TaskId);
uuid_id!(WorkerId);

/// Most copies one publish can make.
pub const MAX_COPIES: usize = 0xFFFF;

impl TaskId {
    /// A new publish's id. Its copies' ids share its first 14 bytes and differ
    /// in the last two (the copy's index), so all copies of one publish sort
    /// together and are found by one range scan; the publish id itself ends in
    /// `FFFF`, which no copy uses.
    pub fn new_publish() -> Self {
        let mut bytes = *Uuid::now_v7().as_bytes();
        bytes[14] = 0xFF;
        bytes[15] = 0xFF;
        Self(Uuid::from_bytes(bytes))
    }

    /// When its publish was made, as its id says (a time-ordered UUID);
    /// `None` for an id interq did not make.
    pub fn published_at(self) -> Option<crate::model::Millis> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(crate::model::Millis(
            secs * 1000 + u64::from(nanos / 1_000_000),
        ))
    }

    /// The id of copy `index` of this publish.
    pub fn copy(self, index: u16) -> Self {
        debug_assert!((index as usize) < MAX_COPIES);
        self.with_last(index)
    }

    /// Whether this is a publish's id (no copy's).
    pub fn is_publish(self) -> bool {
        self.as_bytes()[14..16] == [0xFF, 0xFF]
    }

    /// The publish a copy id belongs to.
    pub fn publish(self) -> Self {
        self.copy(0).with_last(0xFFFF)
    }

    fn with_last(self, last: u16) -> Self {
        let mut bytes = *self.0.as_bytes();
        bytes[14..16].copy_from_slice(&last.to_be_bytes());
        Self(Uuid::from_bytes(bytes))
    }

    /// The first and last ids the copies of publish `self` can have.
    pub fn copy_range(self) -> (Self, Self) {
        (self.copy(0), self.copy(0xFFFE))
    }
}

/// A queue's name: 1 to 128 bytes of ASCII letters, digits, `_`, `-`, `.`
/// and `:`, so that it is safe in a URL, a log line and a storage key.
///
/// Shared, not copied, when cloned: a million waiting copies name their
/// queue with one allocation (stores intern it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QueueName(std::sync::Arc<str>);

/// Why a queue name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueNameError {
    #[error("a queue name may not be empty")]
    Empty,
    #[error("a queue name may be at most {MAX_QUEUE_NAME_LEN} bytes; this one is {0}")]
    TooLong(usize),
    #[error(
        "a queue name may hold only ASCII letters, digits, `_`, `-`, `.` and `:`; found {0:?}"
    )]
    BadChar(char),
}

impl QueueName {
    pub fn parse(s: &str) -> Result<Self, QueueNameError> {
        if s.is_empty() {
            return Err(QueueNameError::Empty);
        }
        if s.len() > MAX_QUEUE_NAME_LEN {
            return Err(QueueNameError::TooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            return Err(QueueNameError::BadChar(c));
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's shared text, for structures that keep many names (the
    /// router) without copying them.
    pub fn shared(&self) -> &std::sync::Arc<str> {
        &self.0
    }

    /// A name back from `shared`: it was checked when it was parsed.
    pub(crate) fn from_shared(name: std::sync::Arc<str>) -> Self {
        Self(name)
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        QueueName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for QueueName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked() {
        assert!(QueueName::parse("emails.v2:eu-west_1").is_ok());
        assert_eq!(QueueName::parse(""), Err(QueueNameError::Empty));
        assert_eq!(
            QueueName::parse(&"a".repeat(129)),
            Err(QueueNameError::TooLong(129))
        );
        assert_eq!(QueueName::parse("a b"), Err(QueueNameError::BadChar(' ')));
        assert_eq!(QueueName::parse("é"), Err(QueueNameError::BadChar('é')));
    }

    #[test]
    fn copies_of_a_publish_sort_together() {
        let p = TaskId::new_publish();
        let (lo, hi) = p.copy_range();
        assert!(lo <= p.copy(0) && p.copy(3) <= hi && p.copy(0xFFFE) == hi);
        assert!(p > hi, "the publish id is none of its copies");
        assert_eq!(p.copy(7).publish(), p);
        let later = TaskId::new_publish();
        assert!(later.copy(0) > hi);
    }

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<TaskId>().unwrap(), a);
        assert_eq!(TaskId::from_bytes(*a.as_bytes()), a);
        assert!("nope".parse::<TaskId>().is_err());
    }
}
