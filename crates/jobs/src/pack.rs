//! How recipients are stored: sorted distinct chat ids, delta + varint
//! encoded, then deflated, in chunks of at most [`CHUNK_IDS`] ids and
//! [`MAX_CHUNK_BYTES`] bytes.
//!
//! A chunk is one byte of format, then the body:
//! - format 0: the varint stream as is;
//! - format 1: the varint stream, deflated (raw deflate, miniz_oxide).
//!
//! The packer keeps whichever is smaller, so a chunk is never larger than
//! its varint stream. The varint stream is the id count, the first id
//! zigzag-encoded, then each gap to the previous id (always >= 1, since the
//! ids are sorted and distinct). A varint is at most 10 bytes, so a full
//! chunk is at most `10 * CHUNK_IDS + 11` = 1,000,011 bytes, under the
//! 1 MiB a chunk may take in etcd. Dense lists (consecutive ids) pack to a
//! few bytes per thousand; random 10-digit user ids to about 2-3 bytes each.
//!
//! Decoding checks everything it reads (format, count, order, size), so a
//! damaged chunk is reported, never trusted.

use crate::JobError;

/// The most ids in one chunk.
pub const CHUNK_IDS: usize = 100_000;

/// The most bytes in one packed chunk.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

const FORMAT_RAW: u8 = 0;
const FORMAT_DEFLATE: u8 = 1;
/// Deflate level: 6 is zlib's default, a good ratio at tens of MB/s.
const LEVEL: u8 = 6;
/// The largest varint stream a valid chunk holds (count + ids).
const MAX_STREAM_BYTES: usize = 10 * CHUNK_IDS + 11;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one varint at `*pos`, advancing it.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, JobError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(JobError::Corrupt("varint cut short"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            if shift == 63 && b > 1 {
                break;
            }
            return Ok(v);
        }
    }
    Err(JobError::Corrupt("varint too long"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends sorted distinct `ids` to a varint stream (first id zigzag, then
/// gaps). `prev` is the last id already in the stream, `None` at its start.
pub(crate) fn put_sorted(out: &mut Vec<u8>, prev: &mut Option<i64>, id: i64) {
    match *prev {
        None => put_varint(out, zigzag(id)),
        // id > p, so the gap fits in u64 even across the whole i64 range.
        Some(p) => put_varint(out, id.wrapping_sub(p) as u64),
    }
    *prev = Some(id);
}

/// Reads the next id of a sorted stream written by [`put_sorted`].
pub(crate) fn get_sorted(
    buf: &[u8],
    pos: &mut usize,
    prev: &mut Option<i64>,
) -> Result<i64, JobError> {
    let v = get_varint(buf, pos)?;
    let id = match *prev {
        None => unzigzag(v),
        Some(p) => {
            if v == 0 {
                return Err(JobError::Corrupt("ids not strictly ascending"));
            }
            let id = p.wrapping_add(v as i64);
            if id <= p {
                return Err(JobError::Corrupt("ids not strictly ascending"));
            }
            id
        }
    };
    *prev = Some(id);
    Ok(id)
}

/// Packs sorted distinct ids (at most [`CHUNK_IDS`]) into one chunk.
pub fn pack_chunk(ids: &[i64]) -> Result<Vec<u8>, JobError> {
    if ids.is_empty() || ids.len() > CHUNK_IDS {
        return Err(JobError::ChunkSize(ids.len()));
    }
    let mut stream = Vec::with_capacity(ids.len() * 3 + 8);
    put_varint(&mut stream, ids.len() as u64);
    let mut prev = None;
    for &id in ids {
        if prev.is_some_and(|p| id <= p) {
            return Err(JobError::Unsorted);
        }
        put_sorted(&mut stream, &mut prev, id);
    }
    let deflated = miniz_oxide::deflate::compress_to_vec(&stream, LEVEL);
    let (format, body) = if deflated.len() < stream.len() {
        (FORMAT_DEFLATE, deflated)
    } else {
        (FORMAT_RAW, stream)
    };
    let mut chunk = Vec::with_capacity(body.len() + 1);
    chunk.push(format);
    chunk.extend_from_slice(&body);
    debug_assert!(chunk.len() <= MAX_CHUNK_BYTES);
    Ok(chunk)
}

/// Unpacks a chunk into its ids (sorted, distinct, at most [`CHUNK_IDS`]).
pub fn unpack_chunk(chunk: &[u8]) -> Result<Vec<i64>, JobError> {
    if chunk.len() > MAX_CHUNK_BYTES {
        return Err(JobError::Corrupt("chunk larger than 1 MiB"));
    }
    let (&format, body) = chunk
        .split_first()
        .ok_or(JobError::Corrupt("empty chunk"))?;
    let inflated;
    let stream = match format {
        FORMAT_RAW => body,
        FORMAT_DEFLATE => {
            inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(body, MAX_STREAM_BYTES)
                .map_err(|_| JobError::Corrupt("chunk does not inflate"))?;
            &inflated[..]
        }
        _ => return Err(JobError::Corrupt("unknown chunk format")),
    };
    let mut pos = 0;
    let n = get_varint(stream, &mut pos)?;
    if n == 0 || n > CHUNK_IDS as u64 {
        return Err(JobError::Corrupt("chunk count out of range"));
    }
    let mut ids = Vec::with_capacity(n as usize);
    let mut prev = None;
    for _ in 0..n {
        ids.push(get_sorted(stream, &mut pos, &mut prev)?);
    }
    if pos != stream.len() {
        return Err(JobError::Corrupt("bytes after the last id"));
    }
    Ok(ids)
}

/// Where a job's recipients are: how many ids each chunk holds, in order.
/// Recipient `i` (0-based, in ascending chat id order) is in the chunk whose
/// range covers `i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    chunk_counts: Vec<u32>,
    total: u64,
}

impl Manifest {
    /// A manifest over chunks of these sizes; each must be 1..=CHUNK_IDS.
    pub fn new(chunk_counts: Vec<u32>) -> Result<Manifest, JobError> {
        if chunk_counts
            .iter()
            .any(|&c| c == 0 || c as usize > CHUNK_IDS)
        {
            return Err(JobError::Corrupt("chunk count out of range"));
        }
        let total = chunk_counts.iter().map(|&c| u64::from(c)).sum();
        Ok(Manifest {
            chunk_counts,
            total,
        })
    }

    pub fn total(&self) -> u64 {
        self.total
    }
    pub fn chunks(&self) -> usize {
        self.chunk_counts.len()
    }
    pub fn chunk_counts(&self) -> &[u32] {
        &self.chunk_counts
    }

    /// The chunk holding recipient `index` and the index of its first
    /// recipient; `None` past the end.
    pub fn locate(&self, index: u64) -> Option<(usize, u64)> {
        let mut base = 0u64;
        for (n, &c) in self.chunk_counts.iter().enumerate() {
            if index < base + u64::from(c) {
                return Some((n, base));
            }
            base += u64::from(c);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_chunk_of_the_worst_ids_fits_in_one_mebibyte() {
        // Ids spread evenly over the whole i64 range: the largest gaps a
        // full chunk can have (7-byte varints), which do not deflate.
        let step = u64::MAX / CHUNK_IDS as u64;
        let ids: Vec<i64> = (0..CHUNK_IDS as u64)
            .map(|i| (i64::MIN as u64).wrapping_add(i * step) as i64)
            .collect();
        let chunk = pack_chunk(&ids).unwrap();
        assert!(chunk.len() <= MAX_CHUNK_BYTES, "{} bytes", chunk.len());
        assert_eq!(unpack_chunk(&chunk).unwrap(), ids);
    }

    #[test]
    fn consecutive_ids_pack_to_almost_nothing() {
        let ids: Vec<i64> = (1_000_000..1_000_000 + CHUNK_IDS as i64).collect();
        let chunk = pack_chunk(&ids).unwrap();
        assert!(chunk.len() < 2_000, "{} bytes", chunk.len());
        assert_eq!(unpack_chunk(&chunk).unwrap(), ids);
    }

    #[test]
    fn unsorted_duplicate_empty_or_oversized_input_is_refused() {
        assert!(pack_chunk(&[2, 1]).is_err());
        assert!(pack_chunk(&[1, 1]).is_err());
        assert!(pack_chunk(&[]).is_err());
        assert!(pack_chunk(&vec![0; CHUNK_IDS + 1]).is_err());
    }

    #[test]
    fn damaged_chunks_are_reported_not_trusted() {
        let good = pack_chunk(&[-5, 1, 7, 1 << 40]).unwrap();
        assert!(unpack_chunk(&[]).is_err());
        assert!(unpack_chunk(&[9, 1, 2]).is_err());
        assert!(unpack_chunk(&good[..good.len() - 1]).is_err());
        // A raw stream with a zero gap (a duplicate).
        assert!(unpack_chunk(&[FORMAT_RAW, 2, 2, 0]).is_err());
        // A raw stream with trailing bytes.
        assert!(unpack_chunk(&[FORMAT_RAW, 1, 2, 5]).is_err());
        // An 11-byte varint.
        assert!(
            unpack_chunk(&[
                FORMAT_RAW, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1
            ])
            .is_err()
        );
    }

    #[test]
    fn the_manifest_locates_every_recipient_in_its_chunk() {
        let m = Manifest::new(vec![3, 2, 4]).unwrap();
        assert_eq!(m.total(), 9);
        assert_eq!(m.locate(0), Some((0, 0)));
        assert_eq!(m.locate(2), Some((0, 0)));
        assert_eq!(m.locate(3), Some((1, 3)));
        assert_eq!(m.locate(8), Some((2, 5)));
        assert_eq!(m.locate(9), None);
        assert!(Manifest::new(vec![0]).is_err());
    }

    proptest! {
        #[test]
        fn pack_then_unpack_gives_back_the_same_ids(
            mut ids in proptest::collection::vec(any::<i64>(), 1..2000),
            dense in any::<bool>(),
        ) {
            if dense {
                let base = ids[0] / 2;
                ids = (0..ids.len() as i64).map(|i| base + i * 3).collect();
            }
            ids.sort_unstable();
            ids.dedup();
            let chunk = pack_chunk(&ids).unwrap();
            prop_assert!(chunk.len() <= 10 * ids.len() + 12);
            prop_assert_eq!(unpack_chunk(&chunk).unwrap(), ids);
        }

        #[test]
        fn varints_round_trip(v in any::<u64>(), z in any::<i64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            put_varint(&mut buf, zigzag(z));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&buf, &mut pos).unwrap(), v);
            prop_assert_eq!(unzigzag(get_varint(&buf, &mut pos).unwrap()), z);
            prop_assert_eq!(pos, buf.len());
        }
    }
}
