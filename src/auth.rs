//! Who may call what: three roles, each with its own keys.
//!
//! A key is a long random string that interq generates (`interq key new`); the
//! settings hold only its salted SHA-256 (`sha256:<salt>:<digest>`, hex), so a
//! leaked settings file gives no key away. A request presents a key as
//! `Authorization: Bearer <key>`, or as the password of HTTP Basic (the user
//! name is ignored). Digests are compared in constant time.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::QueueFilter;

/// What a key lets its holder do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Publishes tasks.
    Publisher,
    /// Registers, claims and reports.
    Worker,
    /// Everything: interests, queues, status, metrics, the management site.
    Admin,
    /// Sees what an admin sees (status, task lists and logs, metrics, the
    /// management site's pages) and changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Publisher, Role::Worker, Role::Admin, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Worker => "worker",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored key: salt and digest of SHA-256(salt || key).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

/// Why a stored key hash was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key hash is written sha256:<32 hex digits of salt>:<64 hex digits of digest> (make one with `interq key new`)")]
pub struct KeyHashError;

impl KeyHash {
    pub fn parse(s: &str) -> Result<Self, KeyHashError> {
        let mut parts = s.trim().split(':');
        let (Some("sha256"), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyHashError);
        };
        Ok(Self {
            salt: hex_array(salt).ok_or(KeyHashError)?,
            digest: hex_array(digest).ok_or(KeyHashError)?,
        })
    }

    fn of(key: &str, salt: [u8; 16]) -> Self {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(key.as_bytes());
        Self {
            salt,
            digest: h.finalize().into(),
        }
    }

    /// Whether `key` is the key this hash was made from.
    pub fn matches(&self, key: &str) -> bool {
        let candidate = Self::of(key, self.salt);
        candidate.digest.ct_eq(&self.digest).into()
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}:{}", hex(&self.salt), hex(&self.digest))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// A new random key (32 bytes of the OS's randomness, hex) and its hash.
pub fn new_key() -> (String, KeyHash) {
    let mut bytes = [0u8; 32];
    let mut salt = [0u8; 16];
    fill_random(&mut bytes);
    fill_random(&mut salt);
    let key = format!("iq_{}", hex(&bytes));
    let hash = KeyHash::of(&key, salt);
    (key, hash)
}

fn fill_random(buf: &mut [u8]) {
    // UUIDv4s are drawn from the operating system's generator.
    for chunk in buf.chunks_mut(16) {
        let r = *uuid::Uuid::new_v4().as_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One configured key: its hash, the roles it holds, and what more the
/// settings say of it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub roles: Vec<Role>,
    pub hash: KeyHash,
    /// A name for people: the audit log and a worker's owner show it.
    pub label: Option<String>,
    /// The queues it may use; all when absent.
    pub queues: Option<QueueFilter>,
}

/// Who is calling: what a presented key was found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub roles: Vec<Role>,
    /// The key's label, or a short, non-secret name derived from its hash:
    /// workers it registers belong to it.
    pub key: String,
    /// The queues it may use; all when absent.
    pub queues: Option<QueueFilter>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Whether it may use `queue`.
    pub fn allows(&self, queue: &str) -> bool {
        self.queues.as_ref().is_none_or(|q| q.allows(queue))
    }
}

/// Every configured key.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<KeyEntry>,
}

impl Keys {
    pub fn new(keys: Vec<KeyEntry>) -> Self {
        Self { keys }
    }

    /// Keys by role alone, as the plain lists of the settings give them.
    pub fn of_roles(keys: Vec<(Role, KeyHash)>) -> Self {
        Self::new(
            keys.into_iter()
                .map(|(role, hash)| KeyEntry {
                    roles: vec![role],
                    hash,
                    label: None,
                    queues: None,
                })
                .collect(),
        )
    }

    /// Auth is on when any key is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// What `key` is: every entry with its hash joined (roles together; the
    /// queues of either, and all if one has no limit). Every configured
    /// hash is checked, so the time taken does not depend on which matches.
    pub fn identify(&self, key: &str) -> Option<Caller> {
        let mut found: Option<Caller> = None;
        let mut unlimited = false;
        for entry in &self.keys {
            if !entry.hash.matches(key) {
                continue;
            }
            unlimited |= entry.queues.is_none();
            let caller = found.get_or_insert_with(|| Caller {
                roles: Vec::new(),
                key: entry
                    .label
                    .clone()
                    .unwrap_or_else(|| format!("key-{}", &hex(&entry.hash.digest)[..8])),
                queues: None,
            });
            for role in &entry.roles {
                if !caller.roles.contains(role) {
                    caller.roles.push(*role);
                }
            }
            if let Some(q) = &entry.queues {
                caller.queues = Some(match caller.queues.take() {
                    Some(mine) => mine.union(q),
                    None => q.clone(),
                });
            }
        }
        if unlimited {
            if let Some(c) = found.as_mut() {
                c.queues = None;
            }
        }
        found
    }

    /// The roles `key` holds.
    pub fn roles_of(&self, key: &str) -> Vec<Role> {
        self.identify(key).map(|c| c.roles).unwrap_or_default()
    }
}

/// The key a request presents, from `Authorization: Bearer <key>` or HTTP
/// Basic's password.
pub fn presented_key(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Standard base64 (the alphabet of HTTP Basic), padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_matches_its_hash_only() {
        let (key, hash) = new_key();
        assert!(key.starts_with("iq_") && key.len() == 67);
        let parsed = KeyHash::parse(&hash.to_string()).unwrap();
        assert!(parsed.matches(&key));
        assert!(!parsed.matches(&format!("{key}x")));
        assert!(!parsed.matches(""));
        assert_eq!(format!("{hash:?}"), "KeyHash(..)", "never shown");
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in ["", "sha256:00:11", "md5:00000000000000000000000000000000:00", "sha256:zz000000000000000000000000000000:0000000000000000000000000000000000000000000000000000000000000000"] {
            assert_eq!(KeyHash::parse(bad), Err(KeyHashError), "{bad}");
        }
    }

    #[test]
    fn keys_come_as_bearer_or_basic() {
        assert_eq!(presented_key("Bearer abc"), Some("abc".into()));
        assert_eq!(presented_key("bearer  abc "), Some("abc".into()));
        // "admin:s3cret" in base64.
        assert_eq!(
            presented_key("Basic YWRtaW46czNjcmV0"),
            Some("s3cret".into())
        );
        assert_eq!(presented_key("Basic !!!"), None);
        assert_eq!(presented_key("Digest x"), None);
        assert_eq!(presented_key("abc"), None);
    }

    #[test]
    fn roles_of_a_key() {
        let (a, ha) = new_key();
        let (w, hw) = new_key();
        let keys = Keys::of_roles(vec![
            (Role::Admin, ha),
            (Role::Worker, hw.clone()),
            (Role::Publisher, hw),
        ]);
        assert_eq!(keys.roles_of(&a), [Role::Admin]);
        assert_eq!(keys.roles_of(&w), [Role::Worker, Role::Publisher]);
        assert!(keys.roles_of("nope").is_empty());
    }

    #[test]
    fn a_key_limited_to_queues_is_named_by_its_label() {
        let (k, h) = new_key();
        let keys = Keys::new(vec![KeyEntry {
            roles: vec![Role::Worker],
            hash: h.clone(),
            label: Some("mailer".into()),
            queues: Some(QueueFilter::new(vec!["emails.*".into()]).unwrap()),
        }]);
        let c = keys.identify(&k).unwrap();
        assert_eq!(c.key, "mailer");
        assert!(c.allows("emails.eu") && !c.allows("billing"));
        // Listed again without a limit: not limited.
        let keys = Keys::new(vec![
            KeyEntry {
                roles: vec![Role::Worker],
                hash: h.clone(),
                label: None,
                queues: Some(QueueFilter::new(vec!["emails".into()]).unwrap()),
            },
            KeyEntry {
                roles: vec![Role::Publisher],
                hash: h,
                label: None,
                queues: None,
            },
        ]);
        let c = keys.identify(&k).unwrap();
        assert!(c.allows("billing"));
        assert!(c.key.starts_with("key-") && c.key.len() == 12);
        assert_eq!(c.roles, [Role::Worker, Role::Publisher]);
    }
}
