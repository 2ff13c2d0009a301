//! Sealed segments: the old part of the event log, moved out of sled into
//! immutable files.
//!
//! Why: sled 0.34 keeps a page-table entry (~190 bytes of heap) for every
//! page its trees ever had, all loaded when the database opens and not
//! bounded by `cache_capacity`, and a leaf page holds at most 16 keys. With
//! one key per event the node's memory grew with the length of its log
//! however few orders stayed in memory (~18 MB per million events,
//! BENCHMARKS.md, "Bounded memory"), and so did sled's files (~820 bytes per
//! event). Records behind a snapshot are read again only by a start-up
//! without that snapshot, an export or a consumer far behind, always in
//! order: a plain file serves them, and sled keeps the recent tail.
//!
//! Layout: `<log dir>/sealed/<first:020>-<last:020>.seg`, the segments
//! together covering seqs `1..=upto` without a gap. A file is
//! - `MAGIC` (8 bytes);
//! - its records in seq order, each `seq u64 | len u32 | crc32 u32 | bytes`
//!   (the codec record as sled held it);
//! - an index: `(seq u64, offset u64)` of every [`INDEX_EVERY_RECORDS`]th
//!   record, so a read from the middle seeks instead of scanning;
//! - a trailer: `first u64 | last u64 | index offset u64 | index entries
//!   u32 | crc32 of the index u32 | END_MAGIC` (all little-endian).
//!
//! A segment is written under a temporary name, fsynced, renamed and its
//! directory fsynced, so a name always means a whole file. Only then does
//! it join the list, and the sled tree it came from is dropped once all of
//! that tree is sealed ([`crate::store::EventLog::seal_behind`],
//! [`super::trees`]); a crash in between leaves records in both, readers
//! take them from the segment, and opening the log drops the tree. Nothing
//! is ever rewritten.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The folder of the segments inside the log's directory.
pub const SEALED_DIR: &str = "sealed";
const SUFFIX: &str = ".seg";
const MAGIC: &[u8; 8] = b"LRDSEG01";
const END_MAGIC: &[u8; 8] = b"LRDSEGND";
/// One index entry per this many records.
pub const INDEX_EVERY_RECORDS: u64 = 1_024;
const TRAILER_BYTES: u64 = 8 + 8 + 8 + 4 + 4 + 8;
/// A segment is handed to the disk in steps of this many bytes
/// ([`start_write_back`]), with a pause of [`WRITE_BACK_PAUSE_MS`] after
/// each: sealing is background work nobody waits for.
const WRITE_BACK_EVERY_BYTES: u64 = 1024 * 1024;
const WRITE_BACK_PAUSE_MS: u64 = 5;
/// Largest record a segment may hold: a corrupt length must not make a
/// reader allocate gigabytes. sled records are far smaller.
const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;

/// One sealed file, as its trailer describes it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    path: PathBuf,
    /// `(seq, offset)` of every [`INDEX_EVERY_RECORDS`]th record.
    index: Vec<(u64, u64)>,
}

/// Every segment of one log, in seq order.
#[derive(Debug, Clone)]
pub struct Sealed {
    dir: PathBuf,
    segments: Vec<Segment>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Sealed(format!("{}: {why}", path.display()))
}

/// `storage`'s directory fsync (new names durable), as a store error.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    storage::archive::sync_dir(dir).map_err(|e| StoreError::Sealed(e.to_string()))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |e| bad(path, format!("{op}: {e}"))
}

impl Sealed {
    /// The segments in `log_dir`, checked to cover `1..=upto` densely.
    /// Temporary files of an interrupted seal are removed.
    pub fn open(log_dir: &Path) -> Result<Sealed, StoreError> {
        let dir = log_dir.join(SEALED_DIR);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            // The folder's own entry must be durable before a segment in
            // it lets sled forget records.
            sync_dir(log_dir)?;
        }
        let mut segments = vec![];
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let path = entry.map_err(io_err("list", &dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
            } else if name.ends_with(SUFFIX) {
                segments.push(Segment::open(&path)?);
            }
        }
        segments.sort_by_key(|s| s.first);
        let mut expected = 1;
        for s in &segments {
            if s.first != expected {
                return Err(bad(&s.path, format!("expected seq {expected} first")));
            }
            expected = s.last + 1;
        }
        Ok(Sealed { dir, segments })
    }

    /// The last sealed seq (0: none).
    pub fn upto(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.last)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a segment just written; it must continue the others.
    pub fn push(&mut self, segment: Segment) {
        assert_eq!(segment.first, self.upto() + 1, "segments stay dense");
        self.segments.push(segment);
    }

    /// The records with `seq > after`, in order, read lazily.
    pub fn records_after(&self, after: u64) -> Records {
        let pending = self
            .segments
            .iter()
            .filter(|s| s.last > after)
            .cloned()
            .collect();
        Records {
            after,
            pending,
            open: None,
        }
    }

    /// Record `seq`, if sealed.
    pub fn get(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if seq == 0 || seq > self.upto() {
            return Ok(None);
        }
        match self.records_after(seq - 1).next() {
            Some(Ok((s, bytes))) if s == seq => Ok(Some(bytes)),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }
}

impl Segment {
    fn open(path: &Path) -> Result<Segment, StoreError> {
        let mut file = File::open(path).map_err(io_err("open", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        if len < MAGIC.len() as u64 + TRAILER_BYTES {
            return Err(bad(path, "shorter than a header and a trailer"));
        }
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        file.seek(SeekFrom::Start(len - TRAILER_BYTES))
            .and_then(|_| file.read_exact(&mut trailer))
            .map_err(io_err("read trailer", path))?;
        let u64_at = |i: usize| u64::from_le_bytes(trailer[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_le_bytes(trailer[i..i + 4].try_into().unwrap_or([0; 4]));
        if &trailer[32..40] != END_MAGIC {
            return Err(bad(path, "no trailer (not a whole segment)"));
        }
        let (first, last, index_at) = (u64_at(0), u64_at(8), u64_at(16));
        let (entries, crc) = (u32_at(24), u32_at(28));
        let index_bytes = u64::from(entries) * 16;
        if first == 0 || last < first || index_at + index_bytes + TRAILER_BYTES != len {
            return Err(bad(path, "trailer does not match the file"));
        }
        if file_name(first, last) != path.file_name().and_then(|n| n.to_str()).unwrap_or("") {
            return Err(bad(path, "name does not match the trailer"));
        }
        let mut raw = vec![0u8; index_bytes as usize];
        file.seek(SeekFrom::Start(index_at))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(io_err("read index", path))?;
        if crc32fast::hash(&raw) != crc {
            return Err(bad(path, "index checksum mismatch"));
        }
        let index = raw
            .chunks_exact(16)
            .map(|c| {
                let seq = u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
                let at = u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]));
                (seq, at)
            })
            .collect();
        Ok(Segment {
            first,
            last,
            path: path.to_path_buf(),
            index,
        })
    }

    /// Where to start reading for the first record with `seq > after`.
    fn start_for(&self, after: u64) -> u64 {
        let i = self.index.partition_point(|&(seq, _)| seq <= after + 1);
        match i {
            0 => MAGIC.len() as u64,
            i => self.index[i - 1].1,
        }
    }
}

fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}{SUFFIX}")
}

/// Writes one segment of `records` (consecutive seqs from `first`, each
/// as sled held it) into `dir` durably, and returns it (`None`: no
/// records). Nothing gets a segment's name on a gap.
pub fn write(
    dir: &Path,
    first: u64,
    records: impl Iterator<Item = Result<(u64, sled::IVec), StoreError>>,
) -> Result<Option<Segment>, StoreError> {
    let tmp = dir.join(format!("segment-{}.tmp", std::process::id()));
    let written = write_tmp(&tmp, first, records);
    let (first, last) = match written {
        Ok(Some(range)) => range,
        Ok(None) => {
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = dir.join(file_name(first, last));
    fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
    sync_dir(dir)?;
    Segment::open(&path).map(Some)
}

/// The body of [`write`]: records, index, trailer, fsync. `None` when
/// there was no record.
fn write_tmp(
    tmp: &Path,
    expected_first: u64,
    records: impl Iterator<Item = Result<(u64, sled::IVec), StoreError>>,
) -> Result<Option<(u64, u64)>, StoreError> {
    let file = File::create(tmp).map_err(io_err("create", tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut at = MAGIC.len() as u64;
    let mut index: Vec<u8> = vec![];
    let (mut first, mut last) = (0u64, 0u64);
    let mut written_back = 0u64;
    out.write_all(MAGIC).map_err(io_err("write", tmp))?;
    for record in records {
        let (seq, bytes) = record?;
        let expected = if first == 0 { expected_first } else { last + 1 };
        if seq != expected {
            return Err(StoreError::Gap {
                expected,
                found: seq,
            });
        }
        if first == 0 {
            first = seq;
        }
        last = seq;
        if (seq - first) % INDEX_EVERY_RECORDS == 0 {
            index.extend_from_slice(&seq.to_le_bytes());
            index.extend_from_slice(&at.to_le_bytes());
        }
        let len = u32::try_from(bytes.len()).map_err(|_| bad(tmp, "record over 4 GiB"))?;
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&seq.to_le_bytes());
        head[8..12].copy_from_slice(&len.to_le_bytes());
        head[12..].copy_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        out.write_all(&head)
            .and_then(|()| out.write_all(&bytes))
            .map_err(io_err("write", tmp))?;
        at += 16 + u64::from(len);
        if at - written_back >= WRITE_BACK_EVERY_BYTES {
            out.flush().map_err(io_err("write", tmp))?;
            start_write_back(out.get_ref(), written_back, at - written_back);
            written_back = at;
        }
    }
    if first == 0 {
        return Ok(None);
    }
    let entries = (index.len() / 16) as u32;
    let mut trailer = Vec::with_capacity(TRAILER_BYTES as usize);
    trailer.extend_from_slice(&first.to_le_bytes());
    trailer.extend_from_slice(&last.to_le_bytes());
    trailer.extend_from_slice(&at.to_le_bytes());
    trailer.extend_from_slice(&entries.to_le_bytes());
    trailer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    trailer.extend_from_slice(END_MAGIC);
    out.write_all(&index)
        .and_then(|()| out.write_all(&trailer))
        .and_then(|()| out.flush())
        .map_err(io_err("write", tmp))?;
    let file = out.into_inner().map_err(|e| bad(tmp, e))?;
    file.sync_all().map_err(io_err("fsync", tmp))?;
    Ok(Some((first, last)))
}

/// Starts the kernel writing `len` bytes from `offset` back to disk without
/// waiting, then pauses a moment: a segment reaches the disk in steps of
/// [`WRITE_BACK_EVERY_BYTES`] instead of ~10 MB at its final fsync, which
/// would queue ahead of the writer's `fdatasync` of the log (confirm p99
/// 27-28 ms with sealing against 21-26 ms without, BENCHMARKS.md).
/// Best effort: the fsync at the end is what makes the segment durable.
fn start_write_back(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; no memory shared.
        let _ = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
    std::thread::sleep(std::time::Duration::from_millis(WRITE_BACK_PAUSE_MS));
}

/// Sealed records after some seq, segment by segment.
pub struct Records {
    after: u64,
    pending: std::collections::VecDeque<Segment>,
    open: Option<(Segment, BufReader<File>)>,
}

impl Records {
    fn read_one(
        segment: &Segment,
        file: &mut BufReader<File>,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        let mut head = [0u8; 16];
        file.read_exact(&mut head)
            .map_err(io_err("read", &segment.path))?;
        let seq = u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8]));
        let len = u32::from_le_bytes(head[8..12].try_into().unwrap_or([0; 4]));
        let crc = u32::from_le_bytes(head[12..].try_into().unwrap_or([0; 4]));
        if len > MAX_RECORD_BYTES {
            return Err(bad(&segment.path, format!("record {seq}: length {len}")));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact(&mut bytes)
            .map_err(io_err("read", &segment.path))?;
        if crc32fast::hash(&bytes) != crc {
            return Err(bad(
                &segment.path,
                format!("record {seq}: checksum mismatch"),
            ));
        }
        Ok((seq, bytes))
    }

    fn open_next(&mut self) -> Result<bool, StoreError> {
        let Some(segment) = self.pending.pop_front() else {
            return Ok(false);
        };
        let mut file = File::open(&segment.path).map_err(io_err("open", &segment.path))?;
        file.seek(SeekFrom::Start(segment.start_for(self.after)))
            .map_err(io_err("seek", &segment.path))?;
        self.open = Some((segment, BufReader::with_capacity(256 * 1024, file)));
        Ok(true)
    }
}

impl Iterator for Records {
    type Item = Result<(u64, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.open.is_none() {
                match self.open_next() {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(e) => {
                        self.pending.clear();
                        return Some(Err(e));
                    }
                }
            }
            let (segment, file) = self.open.as_mut()?;
            if self.after >= segment.last {
                self.open = None;
                continue;
            }
            match Self::read_one(segment, file) {
                // Records before `after` in the indexed stretch are skipped.
                Ok((seq, _)) if seq <= self.after => continue,
                Ok((seq, bytes)) => {
                    self.after = seq;
                    return Some(Ok((seq, bytes)));
                }
                Err(e) => {
                    self.open = None;
                    self.pending.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}
