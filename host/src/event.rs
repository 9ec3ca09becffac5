//! A stored webhook event: what ingest writes to the journal and then into
//! sled, and what a plugin later receives.
//!
//! The encoding is a small explicit binary format (version byte, then
//! length-prefixed fields) so a 1 KiB body costs a copy, not an escape, and
//! the body stays byte for byte what the provider sent. Decoding untrusted
//! or damaged bytes returns an error, never panics.

/// The id hookhost gives an event: `evt_` and the journal sequence number
/// in hex. Unique across sources and restarts (the journal never reuses a
/// sequence), and sortable by arrival.
pub fn event_id(seq: u64) -> String {
    format!("evt_{seq:016x}")
}

/// The journal sequence inside an event id, if it is one of ours.
pub fn parse_event_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("evt_")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Source name (`POST /webhooks/{source}`).
    pub source: String,
    /// The provider's id for the event (from the scheme), the dedupe key.
    pub provider_id: String,
    /// Derived kind, e.g. `issues.opened`.
    pub kind: String,
    /// Receive time, ms since the Unix epoch.
    pub received_at_ms: u64,
    /// Headers kept for handlers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stored event is damaged or of an unknown format: {0}")]
pub struct DecodeError(&'static str);

impl DecodeError {
    /// A decode error for another stored record: what could not be read.
    pub fn new(what: &'static str) -> Self {
        Self(what)
    }
}

/// Format version, first byte of every record: a future format can still
/// read records written before it.
const VERSION: u8 = 1;

impl StoredEvent {
    /// Encode for the journal and sled.
    pub fn encode(&self) -> Vec<u8> {
        let size = 1
            + 8
            + 4 * (4 + 2 * self.headers.len())
            + self.source.len()
            + self.provider_id.len()
            + self.kind.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.body.len();
        let mut out = Vec::with_capacity(size);
        out.push(VERSION);
        out.extend_from_slice(&self.received_at_ms.to_le_bytes());
        for field in [&self.source, &self.provider_id, &self.kind] {
            put(&mut out, field.as_bytes());
        }
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (k, v) in &self.headers {
            put(&mut out, k.as_bytes());
            put(&mut out, v.as_bytes());
        }
        put(&mut out, &self.body);
        out
    }

    /// Decode what [`StoredEvent::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(1)? != [VERSION] {
            return Err(DecodeError("unknown version"));
        }
        let received_at_ms = u64::from_le_bytes(r.array()?);
        let source = r.string()?;
        let provider_id = r.string()?;
        let kind = r.string()?;
        let n = u32::from_le_bytes(r.array()?) as usize;
        // Each header takes at least 8 bytes: a count beyond that is damage,
        // not a reason to allocate.
        if n > r.0.len() / 8 {
            return Err(DecodeError("header count"));
        }
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            headers.push((r.string()?, r.string()?));
        }
        let body = r.bytes()?.to_vec();
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Self {
            source,
            provider_id,
            kind,
            received_at_ms,
            headers,
            body,
        })
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredEvent {
        StoredEvent {
            source: "github".into(),
            provider_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            kind: "issues.opened".into(),
            received_at_ms: 1_700_000_000_123,
            headers: vec![("x-github-event".into(), "issues".into())],
            body: vec![0, 159, 146, 150, b'{'],
        }
    }

    #[test]
    fn round_trips_byte_exact() {
        let e = sample();
        assert_eq!(StoredEvent::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(StoredEvent::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(
            StoredEvent::decode(&wrong),
            Err(DecodeError("unknown version"))
        );
        let mut extra = bytes;
        extra.push(0);
        assert!(StoredEvent::decode(&extra).is_err());
        // A huge header count in a short record.
        let mut lying = vec![VERSION];
        lying.extend_from_slice(&0u64.to_le_bytes());
        for _ in 0..3 {
            lying.extend_from_slice(&0u32.to_le_bytes());
        }
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            StoredEvent::decode(&lying),
            Err(DecodeError("header count"))
        );
    }

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(event_id(1), "evt_0000000000000001");
        assert_eq!(parse_event_id(&event_id(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_event_id("evt_1"), None);
        assert_eq!(parse_event_id("msg_0000000000000001"), None);
    }
}
