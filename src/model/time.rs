use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch.
///
/// The API speaks unix seconds (`runAt: 1764165000`), so in human-readable
/// formats (JSON) it serializes as seconds with a fractional part of
/// milliseconds; binary formats (the store's) keep the milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        (0.0..1e13)
            .contains(&secs)
            .then(|| Self((secs * 1000.0).round() as u64))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    pub fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_u64(self.0);
        }
        if self.0.is_multiple_of(1000) {
            s.serialize_u64(self.0 / 1000)
        } else {
            s.serialize_f64(self.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return u64::deserialize(d).map(Millis);
        }
        let secs = f64::deserialize(d)?;
        Millis::from_secs_f64(secs).ok_or_else(|| serde::de::Error::custom("not a unix time"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_in_and_out() {
        let t = Millis::from_secs_f64(1764165000.25).unwrap();
        assert_eq!(t, Millis(1_764_165_000_250));
        assert_eq!(serde_json::to_string(&t).unwrap(), "1764165000.25");
        assert_eq!(serde_json::to_string(&Millis(5000)).unwrap(), "5");
        assert_eq!(
            serde_json::from_str::<Millis>("12.5").unwrap(),
            Millis(12_500)
        );
        assert!(Millis::from_secs_f64(-1.0).is_none());
        assert!(Millis::from_secs_f64(f64::NAN).is_none());
    }

    #[test]
    fn binary_formats_keep_milliseconds() {
        for t in [Millis(0), Millis(5000), Millis(1_764_165_000_250)] {
            let bytes = postcard::to_stdvec(&t).unwrap();
            assert_eq!(postcard::from_bytes::<Millis>(&bytes).unwrap(), t);
        }
    }
}
