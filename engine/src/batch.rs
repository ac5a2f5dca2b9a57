//! [`WriteBatch`]: puts and deletes applied atomically.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::options::{MAX_KEY_SIZE_BYTES, MAX_VALUE_SIZE_BYTES};

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Put(Bytes, Bytes),
    Delete(Bytes),
}

impl BatchOp {
    pub(crate) fn key(&self) -> &Bytes {
        match self {
            BatchOp::Put(k, _) | BatchOp::Delete(k) => k,
        }
    }
}

/// Puts and deletes applied atomically and in order by
/// [`Db::write`](crate::Db::write): after a crash either all of a batch is
/// there or none of it.
///
/// # Examples
/// ```
/// let mut batch = varve_db::WriteBatch::new();
/// batch.put("a", "1").delete("b");
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
    pub(crate) size_bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        self.size_bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put(key, value));
        self
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        let key = key.into();
        self.size_bytes += key.len();
        self.ops.push(BatchOp::Delete(key));
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Key and value bytes in the batch.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.size_bytes = 0;
    }

    /// Checks every key and value against the documented limits.
    pub(crate) fn validate(&self) -> Result<()> {
        for op in &self.ops {
            check_key(op.key())?;
            if let BatchOp::Put(_, v) = op {
                check_value(v)?;
            }
        }
        Ok(())
    }
}

/// Checks a key against [`MAX_KEY_SIZE_BYTES`]. Empty keys are allowed.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_SIZE_BYTES {
        return Err(Error::KeyTooLarge {
            size_bytes: key.len(),
            max_bytes: MAX_KEY_SIZE_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_SIZE_BYTES {
        return Err(Error::ValueTooLarge {
            size_bytes: value.len(),
            max_bytes: MAX_VALUE_SIZE_BYTES,
        });
    }
    Ok(())
}
