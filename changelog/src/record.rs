//! Records: what a changelog stores.

use bytes::Bytes;

/// One record of the changelog: a key, a value or a tombstone, a timestamp
/// and optional headers.
///
/// # Examples
/// ```
/// use varve_changelog::Record;
/// let put = Record::put("user:1", "alice").with_timestamp_ms(1_700_000_000_000);
/// let del = Record::tombstone("user:2");
/// assert!(put.value.is_some());
/// assert!(del.is_tombstone());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key (may be empty).
    pub key: Bytes,
    /// The value, or `None` for a tombstone (a deletion of the key).
    pub value: Option<Bytes>,
    /// The record's timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Optional application headers, as in Kafka.
    pub headers: Vec<Header>,
}

/// A record header: a string name and a byte value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value.
    pub value: Bytes,
}

impl Record {
    /// A record that sets `key` to `value`, stamped with the current time.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Record {
        Record {
            key: key.into(),
            value: Some(value.into()),
            timestamp_ms: now_ms(),
            headers: Vec::new(),
        }
    }

    /// A tombstone for `key` (a deletion), stamped with the current time.
    pub fn tombstone(key: impl Into<Bytes>) -> Record {
        Record {
            key: key.into(),
            value: None,
            timestamp_ms: now_ms(),
            headers: Vec::new(),
        }
    }

    /// Replaces the timestamp.
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Record {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Record {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Whether this record deletes its key.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// A record read back from the log, with the offset it was assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset in the log.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// A record borrowed from a source's buffers, as
/// [`RecordSource::poll_each`](crate::RecordSource::poll_each) hands it
/// over: its offset, key, value and timestamp, without headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's offset in the log.
    pub offset: u64,
    /// The key (may be empty).
    pub key: &'a [u8],
    /// The value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The record's timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl StoredRecord {
    /// The record borrowed, without its headers.
    ///
    /// # Examples
    /// ```
    /// use varve_changelog::{Record, StoredRecord};
    /// let stored = StoredRecord { offset: 7, record: Record::put("k", "v") };
    /// let r = stored.as_ref();
    /// assert_eq!((r.offset, r.key, r.value), (7, &b"k"[..], Some(&b"v"[..])));
    /// ```
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            offset: self.offset,
            key: &self.record.key,
            value: self.record.value.as_deref(),
            timestamp_ms: self.record.timestamp_ms,
        }
    }
}

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
