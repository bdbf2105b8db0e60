//! The write-ahead log: what makes a change durable before it reaches the
//! redb file. Each group commit appends one record and makes it durable
//! with one `fdatasync`; the records are folded into the redb file at
//! checkpoints, after which the segments they fill are deleted.
//!
//! A segment is a file `wal/<first entry, 20 digits>.log`, its space
//! allocated ahead (so that an append rarely changes the file's size), of
//! records:
//!
//! ```text
//! u32 body length | u32 CRC-32 of (first, last, body) | u64 first | u64 last | body
//! ```
//!
//! where `first..=last` are the journal entries the record holds and the
//! body is their `Batch` (postcard). Reading stops at the first record that
//! is short, fails its CRC, or does not follow the one before: that is where
//! a crash cut the log, and appending resumes there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::store::engine::Batch;
use crate::store::StoreError;

const HEADER: usize = 24;
/// A record's body may not be larger than this: a longer length is a torn
/// or stale header, not a record.
const MAX_BODY: usize = 1 << 30;
/// The largest record buffer kept for the next append.
const SCRATCH_KEPT: usize = 8 << 20;

/// The log's directory and the segment appended to.
#[derive(Debug)]
pub(super) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    /// Where the next record goes in `file`.
    at: u64,
    /// Bytes allocated in `file`.
    allocated: u64,
    /// The segments, by first entry, oldest first (the last is `file`).
    segments: Vec<u64>,
    /// The last entry written.
    pub last: u64,
    /// The record being written, kept between appends: a fresh buffer of a
    /// group's size each time costs more in page faults than the encoding.
    scratch: Vec<u8>,
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    super::journal::classify(what, e)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// The segments in `dir`, by first entry.
fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io("reading the log's directory", e))? {
        let entry = entry.map_err(|e| io("reading the log's directory", e))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(first);
    }
    out.sort_unstable();
    Ok(out)
}

/// One record read back.
pub(super) struct Record {
    pub last: u64,
    pub batch: Batch,
}

impl Wal {
    /// Reads the records after entry `after`, in order, to `each`, changing
    /// nothing (for a store that cannot write now).
    pub fn read(
        dir: &Path,
        after: u64,
        mut each: impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Ok(segments) = list(dir) else {
            return Ok(());
        };
        let mut last = after;
        for (i, &first) in segments.iter().enumerate() {
            let next_first = segments.get(i + 1).copied();
            if next_first.is_some_and(|n| n <= after + 1) {
                continue;
            }
            let (_, cut) = read_segment(&segment_path(dir, first), &mut last, &mut each)?;
            if cut {
                break;
            }
        }
        Ok(())
    }

    /// Reads the log in `dir` (created if missing): the records after entry
    /// `after`, in order, to `each`; then opens it for appending where the
    /// valid records end. Segments wholly at or before `after`, and any
    /// after a cut, are deleted.
    pub fn open(
        dir: &Path,
        after: u64,
        segment_bytes: u64,
        mut each: impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the log's directory", e))?;
        let segments = list(dir)?;
        let mut last = after;
        let mut tail: Option<(u64, u64)> = None;
        let mut cut = false;
        for (i, &first) in segments.iter().enumerate() {
            let path = segment_path(dir, first);
            if cut {
                std::fs::remove_file(&path)
                    .map_err(|e| io("removing a log segment past a cut", e))?;
                continue;
            }
            let next_first = segments.get(i + 1).copied();
            // Wholly covered by the file already.
            if next_first.is_some_and(|n| n <= after + 1) {
                std::fs::remove_file(&path).map_err(|e| io("removing a folded log segment", e))?;
                continue;
            }
            let (end, ended_early) = read_segment(&path, &mut last, &mut each)?;
            tail = Some((first, end));
            // A cut inside this segment: nothing after it is valid, and a
            // segment that follows would hold entries out of order.
            cut = ended_early && next_first.is_some();
        }
        let segments: Vec<u64> = list(dir)?;
        let (first, at) = match tail {
            Some((first, end)) if segments.last() == Some(&first) => (first, end),
            _ => (last + 1, 0),
        };
        let path = segment_path(dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening a log segment", e))?;
        let mut wal = Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            file,
            at,
            allocated: 0,
            segments: list(dir)?,
            last,
            scratch: Vec::new(),
        };
        // Whatever follows the last valid record (a torn one) goes, so
        // that new records follow valid ones directly.
        wal.file
            .set_len(at)
            .map_err(|e| io("cutting the log at its last valid record", e))?;
        wal.allocated = at;
        wal.allocate()?;
        sync_dir(dir)?;
        Ok(wal)
    }

    /// Appends one record holding entries `first..=last` and makes it
    /// durable.
    pub fn append(&mut self, first: u64, last: u64, batch: &Batch) -> Result<(), StoreError> {
        let mut record = std::mem::take(&mut self.scratch);
        record.clear();
        record.resize(HEADER, 0);
        let mut record = postcard::to_extend(batch, record).expect("a batch encodes");
        let len = record.len() - HEADER;
        let sum = crc(first, last, &record[HEADER..]);
        record[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        record[4..8].copy_from_slice(&sum.to_le_bytes());
        record[8..16].copy_from_slice(&first.to_le_bytes());
        record[16..24].copy_from_slice(&last.to_le_bytes());
        let written = self.write(&record);
        // One huge group should not pin its buffer for the life of the log.
        if record.capacity() <= SCRATCH_KEPT {
            self.scratch = record;
        }
        written?;
        self.last = last;
        Ok(())
    }

    fn write(&mut self, record: &[u8]) -> Result<(), StoreError> {
        if self.at + record.len() as u64 > self.allocated {
            self.allocate_for(record.len() as u64)?;
        }
        self.file
            .seek(SeekFrom::Start(self.at))
            .and_then(|_| self.file.write_all(record))
            .map_err(|e| io("writing the log", e))?;
        self.file
            .sync_data()
            .map_err(|e| io("making the log durable", e))?;
        self.at += record.len() as u64;
        Ok(())
    }

    /// Starts a new segment for the entries after the last written, so
    /// that the ones before can be deleted once folded into the file.
    pub fn rotate(&mut self) -> Result<(), StoreError> {
        if self.at == 0 {
            return Ok(());
        }
        let first = self.last + 1;
        let path = segment_path(&self.dir, first);
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("starting a log segment", e))?;
        self.at = 0;
        self.allocated = 0;
        self.allocate()?;
        sync_dir(&self.dir)?;
        self.segments.push(first);
        Ok(())
    }

    /// Deletes the segments whose entries are all at or before `through`
    /// (they are in the file now).
    pub fn delete_through(&mut self, through: u64) -> Result<(), StoreError> {
        while self.segments.len() > 1 && self.segments[1] <= through + 1 {
            let first = self.segments.remove(0);
            std::fs::remove_file(segment_path(&self.dir, first))
                .map_err(|e| io("removing a folded log segment", e))?;
        }
        Ok(())
    }

    fn allocate(&mut self) -> Result<(), StoreError> {
        self.allocate_for(0)
    }

    /// Allocates the segment's space ahead of the writes (at least `more`
    /// past the write position), so that most appends leave the file's
    /// size alone and their `fdatasync` has no metadata to write.
    fn allocate_for(&mut self, more: u64) -> Result<(), StoreError> {
        let want = (self.at + more).max(self.segment_bytes);
        if want <= self.allocated {
            return Ok(());
        }
        let want = want.max(self.allocated + self.segment_bytes);
        nix::fcntl::posix_fallocate(&self.file, 0, want as i64).map_err(|e| {
            io(
                "allocating log space",
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        self.file
            .sync_all()
            .map_err(|e| io("allocating log space", e))?;
        self.allocated = want;
        Ok(())
    }
}

fn crc(first: u64, last: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&first.to_le_bytes());
    h.update(&last.to_le_bytes());
    h.update(body);
    h.finalize()
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("making the log's directory durable", e))
}

/// Reads one segment's valid records after `*last`, passing each on. Returns
/// where the valid records end, and whether they ended before the file's
/// data did (a cut).
fn read_segment(
    path: &Path,
    last: &mut u64,
    each: &mut impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<(u64, bool), StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io("reading a log segment", e))?;
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let first = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let record_last = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        // Space allocated ahead reads as zeros: the end.
        if len == 0 || len > MAX_BODY {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc(first, record_last, body) != sum || record_last < first {
            break;
        }
        if record_last > *last {
            if first > *last + 1 {
                // Entries are missing between the file and this record.
                return Err(StoreError::Corrupt(format!(
                    "{}: the log jumps from entry {} to {first}",
                    path.display(),
                    *last
                )));
            }
            let batch: Batch = postcard::from_bytes(body).map_err(|e| {
                StoreError::Corrupt(format!("{}: a log record: {e}", path.display()))
            })?;
            each(Record {
                last: record_last,
                batch,
            })?;
            *last = record_last;
        }
        at += HEADER + len;
    }
    let data_ends_later = bytes[at.min(bytes.len())..].iter().any(|&b| b != 0);
    Ok((at as u64, data_ends_later))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Counters;
    use crate::store::engine::Op;

    fn batch(n: u64) -> Batch {
        Batch {
            ops: vec![Op::PutAudit(n, vec![n as u8; 40])],
            counters: Counters {
                published: n,
                ..Counters::default()
            },
        }
    }

    fn read_all(dir: &Path, after: u64) -> Vec<u64> {
        let mut seen = Vec::new();
        Wal::read(dir, after, |r| {
            seen.push(r.batch.counters.published);
            assert_eq!(r.last, r.batch.counters.published);
            Ok(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn records_come_back_in_order_after_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 0, 1 << 16, |_| panic!("empty")).unwrap();
        for n in 1..=5 {
            wal.append(n, n, &batch(n)).unwrap();
        }
        wal.rotate().unwrap();
        for n in 6..=8 {
            wal.append(n, n, &batch(n)).unwrap();
        }
        drop(wal);
        assert_eq!(read_all(dir.path(), 0), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(read_all(dir.path(), 5), [6, 7, 8]);
        // Reopened after entry 5: the first segment is gone, appends go on.
        let mut seen = Vec::new();
        let mut wal = Wal::open(dir.path(), 5, 1 << 16, |r| {
            seen.push(r.last);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [6, 7, 8]);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        wal.append(9, 9, &batch(9)).unwrap();
        drop(wal);
        assert_eq!(read_all(dir.path(), 5), [6, 7, 8, 9]);
    }

    #[test]
    fn a_torn_record_ends_the_log_and_appends_resume_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 0, 1 << 16, |_| Ok(())).unwrap();
        for n in 1..=3 {
            wal.append(n, n, &batch(n)).unwrap();
        }
        let end = wal.at;
        drop(wal);
        // A fourth record cut short by a crash, then stale bytes.
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut torn = Vec::new();
        let body = postcard::to_stdvec(&batch(4)).unwrap();
        torn.extend_from_slice(&(body.len() as u32).to_le_bytes());
        torn.extend_from_slice(&crc(4, 4, &body).to_le_bytes());
        torn.extend_from_slice(&4u64.to_le_bytes());
        torn.extend_from_slice(&4u64.to_le_bytes());
        torn.extend_from_slice(&body[..body.len() / 2]);
        bytes[end as usize..end as usize + torn.len()].copy_from_slice(&torn);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_all(dir.path(), 0), [1, 2, 3]);
        let mut wal = Wal::open(dir.path(), 0, 1 << 16, |_| Ok(())).unwrap();
        assert_eq!((wal.at, wal.last), (end, 3));
        wal.append(4, 4, &batch(4)).unwrap();
        wal.append(5, 5, &batch(5)).unwrap();
        drop(wal);
        assert_eq!(read_all(dir.path(), 0), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_damaged_record_is_where_reading_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 0, 1 << 16, |_| Ok(())).unwrap();
        for n in 1..=4 {
            wal.append(n, n, &batch(n)).unwrap();
        }
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a byte in the third record's body.
        let record = HEADER + postcard::to_stdvec(&batch(1)).unwrap().len();
        bytes[2 * record + HEADER + 3] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_all(dir.path(), 0), [1, 2]);
    }

    #[test]
    fn folded_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), 0, 1 << 16, |_| Ok(())).unwrap();
        for n in 1..=9 {
            wal.append(n, n, &batch(n)).unwrap();
            if n % 3 == 0 {
                wal.rotate().unwrap();
            }
        }
        assert_eq!(list(dir.path()).unwrap(), [1, 4, 7, 10]);
        wal.delete_through(6).unwrap();
        assert_eq!(list(dir.path()).unwrap(), [7, 10]);
        assert_eq!(read_all(dir.path(), 6), [7, 8, 9]);
    }
}
