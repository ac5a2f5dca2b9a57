//! Telling a torn tail from damaged durable data.
//!
//! A crash can only damage what was being written when it happened: the
//! batches after the last completed sync. Every batch carries a claim (its
//! header's `durable_offset`): the offset below which the log was synced
//! when the batch was written. So when a segment scan stops at a bad batch
//! that should start at offset `N`, a *valid* batch further on that claims
//! `durable_offset > N` proves that the bad batch had been synced before:
//! it is damaged durable data, and recovery must refuse it rather than cut
//! it. Without such a proof the bad bytes are treated as a torn tail.
//!
//! The search tries every byte position after the bad batch (its length
//! field may be the damaged part). The header checks are cheap; the CRC is
//! computed only for a header that would prove something, and the CRC work
//! is bounded by a budget proportional to the bytes searched, so a crafted
//! segment cannot make recovery quadratic. When the budget runs out the
//! verdict is [`TailVerdict::Durable`]: refusing is the safe side.

use crate::batch::{self, BATCH_HEADER_SIZE, BATCH_MAGIC};

/// CRC work allowed per byte searched, plus a fixed allowance.
const CRC_BUDGET_PER_BYTE: usize = 4;
const CRC_BUDGET_FIXED_BYTES: usize = 64 << 20;

/// What the bytes after a bad batch say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TailVerdict {
    /// Nothing proves the bad batch was synced: a torn write may explain it.
    Torn,
    /// The bad batch was synced before: it is damaged durable data.
    Durable {
        /// Byte position, relative to the start of the searched bytes, of
        /// the valid batch that proves it (or where the search gave up).
        proof_position: usize,
        /// Why: the proving batch and its claim.
        why: String,
    },
}

/// Judges a bad batch: `after` holds the bytes that follow its first byte
/// (so `after[0]` is the bad batch's first byte), and `expected_offset` is
/// the offset the bad batch should have started at.
pub fn judge_bad_batch(after: &[u8], expected_offset: u64) -> TailVerdict {
    let read = |at: usize, len: usize| -> Result<Vec<u8>, std::convert::Infallible> {
        let end = at.saturating_add(len).min(after.len());
        Ok(after.get(at..end).unwrap_or_default().to_vec())
    };
    match judge_bad_batch_from(read, after.len(), expected_offset) {
        Ok(verdict) => verdict,
        Err(never) => match never {},
    }
}

/// Bytes of candidate positions examined per read.
const WINDOW_BYTES: usize = 4 << 20;

/// As [`judge_bad_batch`], reading the `len` bytes after the bad batch's
/// first byte through `read(position, len)` (positions relative to the
/// bad batch) a window at a time, so memory stays bounded by the window
/// and the largest candidate batch, whatever the file's size.
///
/// # Errors
/// What `read` returns.
pub fn judge_bad_batch_from<E>(
    mut read: impl FnMut(usize, usize) -> Result<Vec<u8>, E>,
    len: usize,
    expected_offset: u64,
) -> Result<TailVerdict, E> {
    let mut budget = len
        .saturating_mul(CRC_BUDGET_PER_BYTE)
        .saturating_add(CRC_BUDGET_FIXED_BYTES);
    let mut window_start = 1usize;
    while window_start + BATCH_HEADER_SIZE <= len {
        let window = read(window_start, WINDOW_BYTES + BATCH_HEADER_SIZE - 1)?;
        let starts = window.len().saturating_sub(BATCH_HEADER_SIZE - 1);
        for i in 0..starts {
            let rest = &window[i..];
            if rest[8] != BATCH_MAGIC {
                continue;
            }
            let Ok(h) = batch::parse_header(rest) else {
                continue;
            };
            let pos = window_start + i;
            if h.base_offset < expected_offset
                || h.durable_offset <= expected_offset
                || h.length as usize > len - pos
            {
                continue;
            }
            if budget < h.length as usize {
                return Ok(TailVerdict::Durable {
                    proof_position: pos,
                    why: "too many candidate batches follow it to tell a torn write from damage"
                        .into(),
                });
            }
            budget -= h.length as usize;
            let candidate = if h.length as usize <= rest.len() {
                std::borrow::Cow::Borrowed(&rest[..h.length as usize])
            } else {
                std::borrow::Cow::Owned(read(pos, h.length as usize)?)
            };
            if batch::check_batch(&candidate).is_ok() {
                return Ok(TailVerdict::Durable {
                    proof_position: pos,
                    why: format!(
                        "a valid batch follows at offset {} and records that offsets below {} \
                         were already synced",
                        h.base_offset, h.durable_offset
                    ),
                });
            }
        }
        if starts == 0 {
            break;
        }
        window_start += starts;
    }
    Ok(TailVerdict::Torn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode_batch_claiming;
    use crate::record::Record;

    fn batch(base: u64, durable: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_batch_claiming(&mut buf, base, durable, &[Record::put("k", "v")]);
        buf
    }

    #[test]
    fn nothing_after_is_torn() {
        assert_eq!(judge_bad_batch(&batch(5, 5), 5), TailVerdict::Torn);
        assert_eq!(judge_bad_batch(&[], 5), TailVerdict::Torn);
    }

    #[test]
    fn a_later_batch_claiming_the_bad_one_proves_damage() {
        let mut data = batch(5, 0);
        data[50] ^= 1;
        data.extend(batch(6, 6));
        assert!(matches!(
            judge_bad_batch(&data, 5),
            TailVerdict::Durable {
                proof_position,
                ..
            } if proof_position == batch(5, 0).len()
        ));
    }

    #[test]
    fn a_later_batch_that_claims_less_proves_nothing() {
        // Written before the bad batch was synced: a power loss may have
        // kept it while tearing the bad one.
        let mut data = batch(5, 0);
        data[50] ^= 1;
        data.extend(batch(6, 5));
        assert_eq!(judge_bad_batch(&data, 5), TailVerdict::Torn);
    }

    #[test]
    fn a_damaged_length_does_not_hide_the_proof() {
        let mut data = batch(5, 0);
        data[1] ^= 0x40;
        data.extend(vec![0; 100]);
        data.extend(batch(9, 7));
        assert!(matches!(
            judge_bad_batch(&data, 5),
            TailVerdict::Durable { .. }
        ));
    }

    #[test]
    fn a_proof_across_windows_is_found() {
        // The proving batch starts just before a window boundary and is
        // larger than a window.
        let mut data = batch(5, 0);
        data[50] ^= 1;
        data.resize(WINDOW_BYTES - 10, 0);
        let mut big = Vec::new();
        encode_batch_claiming(
            &mut big,
            6,
            6,
            &[Record::put("k", vec![7u8; WINDOW_BYTES + 1000])],
        );
        data.extend(big);
        assert!(matches!(
            judge_bad_batch(&data, 5),
            TailVerdict::Durable { proof_position, .. } if proof_position == WINDOW_BYTES - 10
        ));
    }

    #[test]
    fn crafted_candidates_exhaust_the_budget_and_refuse() {
        // Headers that parse and claim everything, with wrong CRCs, at every
        // byte: the search must stop, not run quadratic.
        let one = batch(6, 6);
        let mut data = vec![0u8; 1];
        while data.len() < 4 << 20 {
            let mut fake = one.clone();
            fake[4] ^= 1;
            data.extend(&fake[..BATCH_HEADER_SIZE]);
        }
        let start = std::time::Instant::now();
        let _ = judge_bad_batch(&data, 5);
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }
}
