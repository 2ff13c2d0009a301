//! One immutable run of the archive index: a sorted file of archived
//! orders, read by seeking, with only a sparse index in memory.
//!
//! Why a file and not sled: sled 0.34 keeps a page-table entry (~190 bytes
//! of heap) for every page its trees ever had, loaded when the database
//! opens whatever `cache_capacity` says, and a leaf holds at most 16 keys:
//! with two keys per archived order the node's heap grew by ~52 MB per
//! million orders of history (BENCHMARKS.md, "Bounded memory"). A run keeps
//! one index entry per block of ~[`BLOCK_TARGET_BYTES`] in memory instead.
//!
//! Layout of `<first:020>-<last:020>.run` (`first..=last`: the flush
//! numbers it holds, [`super`] says how runs are merged):
//! - `MAGIC` (8 bytes);
//! - order blocks, then customer blocks, each `len u32 | crc32 u32 | bytes`
//!   with `bytes` postcard: an order block is `[(order id, customer, entry
//!   JSON)]` sorted by id, a customer block `[(customer, order id)]` sorted
//!   by both;
//! - the index, postcard [`Index`]: the first key, offset and length of
//!   every block;
//! - a trailer: `index offset u64 | index length u32 | crc32 of the index
//!   u32 | END_MAGIC` (little-endian).
//!
//! Written under a temporary name, fsynced, renamed and the directory
//! fsynced: a name always means a whole file. Never rewritten.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ArchiveError;

pub const SUFFIX: &str = ".run";
const MAGIC: &[u8; 8] = b"LRDARC01";
const END_MAGIC: &[u8; 8] = b"LRDARCND";
const TRAILER_BYTES: u64 = 8 + 4 + 4 + 8;
/// A block is closed once it holds this many bytes: one read serves a
/// lookup, and the index holds one key per block.
pub const BLOCK_TARGET_BYTES: usize = 32 * 1024;
/// A corrupt length must not make a reader allocate gigabytes; blocks
/// are closed near [`BLOCK_TARGET_BYTES`] (one entry may overshoot).
const MAX_BLOCK_BYTES: u32 = 16 * 1024 * 1024;
const MAX_INDEX_BYTES: u32 = 512 * 1024 * 1024;

/// One archived order as a run holds it (borrowed from a block).
pub type OrderRow<'a> = (&'a str, &'a str, &'a [u8]);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlockRef<K> {
    first: K,
    offset: u64,
    len: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    orders: Vec<BlockRef<String>>,
    customers: Vec<BlockRef<(String, String)>>,
    /// The largest order id (the first keys bound a lookup from below).
    last_order: String,
    entries: u64,
}

/// An open run: its file and its sparse index.
#[derive(Debug)]
pub struct Run {
    pub first: u64,
    pub last: u64,
    path: PathBuf,
    file: File,
    index: Index,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Run(format!("{}: {why}", path.display()))
}

/// `storage`'s directory fsync (new names durable), as an archive error.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    storage::archive::sync_dir(dir).map_err(|e| ArchiveError::Run(e.to_string()))
}

pub fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}{SUFFIX}")
}

/// The flush numbers a run's file name says it holds.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (first, last) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

impl Run {
    pub fn open(path: &Path) -> Result<Run, ArchiveError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (first, last) = parse_name(name).ok_or_else(|| bad(path, "not a run's name"))?;
        let file = File::open(path).map_err(|e| bad(path, format!("open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| bad(path, format!("stat: {e}")))?
            .len();
        if len < MAGIC.len() as u64 + TRAILER_BYTES {
            return Err(bad(path, "shorter than a header and a trailer"));
        }
        let mut trailer = [0u8; TRAILER_BYTES as usize];
        file.read_exact_at(&mut trailer, len - TRAILER_BYTES)
            .map_err(|e| bad(path, format!("read trailer: {e}")))?;
        if &trailer[16..24] != END_MAGIC {
            return Err(bad(path, "no trailer (not a whole run)"));
        }
        let index_at = u64::from_le_bytes(trailer[0..8].try_into().unwrap_or([0; 8]));
        let index_len = u32::from_le_bytes(trailer[8..12].try_into().unwrap_or([0; 4]));
        let crc = u32::from_le_bytes(trailer[12..16].try_into().unwrap_or([0; 4]));
        if index_len > MAX_INDEX_BYTES || index_at + u64::from(index_len) + TRAILER_BYTES != len {
            return Err(bad(path, "trailer does not match the file"));
        }
        let mut raw = vec![0u8; index_len as usize];
        file.read_exact_at(&mut raw, index_at)
            .map_err(|e| bad(path, format!("read index: {e}")))?;
        if crc32fast::hash(&raw) != crc {
            return Err(bad(path, "index checksum mismatch"));
        }
        let index: Index =
            postcard::from_bytes(&raw).map_err(|e| bad(path, format!("index: {e}")))?;
        Ok(Run {
            first,
            last,
            path: path.to_path_buf(),
            file,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Archived orders it holds (duplicates of newer runs included).
    pub fn entries(&self) -> u64 {
        self.index.entries
    }

    fn block(&self, at: &BlockRef<impl Sized>) -> Result<Vec<u8>, ArchiveError> {
        if at.len < 8 || at.len > MAX_BLOCK_BYTES {
            return Err(bad(&self.path, "block length out of bounds"));
        }
        let mut raw = vec![0u8; at.len as usize];
        self.file
            .read_exact_at(&mut raw, at.offset)
            .map_err(|e| bad(&self.path, format!("read block: {e}")))?;
        let crc = u32::from_le_bytes(raw[4..8].try_into().unwrap_or([0; 4]));
        if crc32fast::hash(&raw[8..]) != crc {
            return Err(bad(&self.path, format!("block at {} damaged", at.offset)));
        }
        raw.drain(..8);
        Ok(raw)
    }

    fn decode<'a, T: Deserialize<'a>>(&self, raw: &'a [u8]) -> Result<T, ArchiveError> {
        postcard::from_bytes(raw).map_err(|e| bad(&self.path, format!("block: {e}")))
    }

    /// The order block that would hold `order_id` (None: outside the
    /// run's ids).
    fn block_for(&self, order_id: &str) -> Option<usize> {
        if order_id > self.index.last_order.as_str() {
            return None;
        }
        let blocks = &self.index.orders;
        blocks
            .partition_point(|b| b.first.as_str() <= order_id)
            .checked_sub(1)
    }

    /// The entry JSON of `order_id`, if this run holds it.
    pub fn get(&self, order_id: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(i) = self.block_for(order_id) else {
            return Ok(None);
        };
        let raw = self.block(&self.index.orders[i])?;
        let rows: Vec<OrderRow<'_>> = self.decode(&raw)?;
        Ok(rows
            .binary_search_by(|(id, _, _)| (*id).cmp(order_id))
            .ok()
            .map(|j| rows[j].2.to_vec()))
    }

    /// Which of `order_ids` (sorted) this run holds, reading each block
    /// once (a replay's check of a whole `OrdersArchived`).
    pub fn holds(&self, order_ids: &[&str]) -> Result<Vec<bool>, ArchiveError> {
        let mut out = Vec::with_capacity(order_ids.len());
        let mut decoded: Option<(usize, Vec<u8>)> = None;
        for id in order_ids {
            let Some(i) = self.block_for(id) else {
                out.push(false);
                continue;
            };
            if decoded.as_ref().is_none_or(|(at, _)| *at != i) {
                decoded = Some((i, self.block(&self.index.orders[i])?));
            }
            let raw = decoded
                .as_ref()
                .map(|(_, raw)| raw.as_slice())
                .unwrap_or_default();
            let rows: Vec<OrderRow<'_>> = self.decode(raw)?;
            out.push(rows.binary_search_by(|(rid, _, _)| (*rid).cmp(id)).is_ok());
        }
        Ok(out)
    }

    /// Up to `limit` order ids newest first (by id), of `customer` or
    /// everyone's, not counting those `skip` names.
    pub fn newest(
        &self,
        customer: Option<&str>,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        match customer {
            None => {
                for at in self.index.orders.iter().rev() {
                    let raw = self.block(at)?;
                    let rows: Vec<OrderRow<'_>> = self.decode(&raw)?;
                    for (id, _, _) in rows.iter().rev() {
                        if out.len() >= limit {
                            return Ok(out);
                        }
                        if !skip(id) {
                            out.push(id.to_string());
                        }
                    }
                }
            }
            Some(c) => {
                let blocks = &self.index.customers;
                // Blocks that start at or before the customer's last key.
                let end = blocks.partition_point(|b| b.first.0.as_str() <= c);
                for at in blocks[..end].iter().rev() {
                    let raw = self.block(at)?;
                    let rows: Vec<(&str, &str)> = self.decode(&raw)?;
                    for (_, id) in rows.iter().rev().filter(|(rc, _)| *rc == c) {
                        if out.len() >= limit {
                            return Ok(out);
                        }
                        if !skip(id) {
                            out.push(id.to_string());
                        }
                    }
                    if at.first.0.as_str() < c {
                        break; // earlier blocks end before this customer
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every archived order in id order, a block at a time (a merge).
    pub fn rows(&self) -> impl Iterator<Item = Result<Row, ArchiveError>> + '_ {
        self.each_block(
            &self.index.orders,
            |rows: Vec<(String, String, Vec<u8>)>| {
                rows.into_iter()
                    .map(|(order_id, customer, entry)| Row {
                        order_id,
                        customer,
                        entry,
                    })
                    .collect()
            },
        )
    }

    /// Every `(customer, order id)` in order, a block at a time (a merge).
    pub fn pairs(&self) -> impl Iterator<Item = Result<Pair, ArchiveError>> + '_ {
        self.each_block(&self.index.customers, |pairs: Vec<Pair>| pairs)
    }

    fn each_block<'s, K: 's, B, T>(
        &'s self,
        blocks: &'s [BlockRef<K>],
        own: impl Fn(B) -> Vec<T> + 's,
    ) -> impl Iterator<Item = Result<T, ArchiveError>> + 's
    where
        B: serde::de::DeserializeOwned,
        T: 's,
    {
        blocks.iter().flat_map(move |at| {
            let owned = self
                .block(at)
                .and_then(|raw| self.decode::<B>(&raw).map(&own));
            match owned {
                Ok(items) => items.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        })
    }
}

/// `(customer, order id)`: a customer's listing key.
pub type Pair = (String, String);

/// One archived order to write into a run (encoded as the tuple
/// [`OrderRow`] borrows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub order_id: String,
    pub customer: String,
    /// The entry JSON, as the index serves it.
    pub entry: Vec<u8>,
}

/// A section written: its blocks and its last item.
type Section<K, T> = (Vec<BlockRef<K>>, Option<T>);

/// Appends blocks to a run being written, and their index.
struct Blocks<W: Write> {
    out: W,
    at: u64,
}

impl<W: Write> Blocks<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(u64, u32), String> {
        let len = u32::try_from(bytes.len() + 8).map_err(|_| "block over 4 GiB".to_string())?;
        let io = |e: std::io::Error| e.to_string();
        self.out.write_all(&len.to_le_bytes()).map_err(io)?;
        self.out
            .write_all(&crc32fast::hash(bytes).to_le_bytes())
            .map_err(io)?;
        self.out.write_all(bytes).map_err(io)?;
        let at = self.at;
        self.at += u64::from(len);
        Ok((at, len))
    }

    /// Writes `items` (in key order) in blocks of about
    /// [`BLOCK_TARGET_BYTES`]; the first key of each block.
    fn section<T: Serialize, K>(
        &mut self,
        items: impl Iterator<Item = Result<T, ArchiveError>>,
        size: impl Fn(&T) -> usize,
        key: impl Fn(&T) -> K,
        should_stop: &dyn Fn() -> bool,
    ) -> Result<Option<Section<K, T>>, String> {
        let mut refs = vec![];
        let mut block: Vec<T> = vec![];
        let mut bytes = 0;
        let mut last = None;
        let mut items = items.peekable();
        while let Some(item) = items.next() {
            let item = item.map_err(|e| e.to_string())?;
            bytes += size(&item);
            block.push(item);
            if bytes < BLOCK_TARGET_BYTES && items.peek().is_some() {
                continue;
            }
            if should_stop() {
                return Ok(None);
            }
            let encoded = postcard::to_allocvec(&block).map_err(|e| e.to_string())?;
            let (offset, len) = self.put(&encoded)?;
            refs.push(BlockRef {
                first: key(&block[0]),
                offset,
                len,
            });
            last = block.pop();
            block.clear();
            bytes = 0;
        }
        Ok(Some((refs, last)))
    }
}

/// Writes the run `first..=last` into `dir`, durably, and opens it:
/// `rows` in order-id order and `pairs` in `(customer, order id)` order,
/// each key once. `None` when `should_stop` said so between blocks (a
/// merge gives up when the node stops) or there was no row.
pub fn write(
    dir: &Path,
    (first, last): (u64, u64),
    rows: impl Iterator<Item = Result<Row, ArchiveError>>,
    pairs: impl Iterator<Item = Result<Pair, ArchiveError>>,
    should_stop: &dyn Fn() -> bool,
) -> Result<Option<Run>, ArchiveError> {
    let tmp = dir.join(format!("{}.tmp", file_name(first, last)));
    match write_tmp(&tmp, rows, pairs, should_stop) {
        Ok(true) => {}
        Ok(false) => {
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(bad(&tmp, e));
        }
    }
    let path = dir.join(file_name(first, last));
    fs::rename(&tmp, &path).map_err(|e| bad(&path, format!("rename: {e}")))?;
    sync_dir(dir)?;
    Run::open(&path).map(Some)
}

/// The body of [`write`]; false when it gave up or had no row.
fn write_tmp(
    tmp: &Path,
    rows: impl Iterator<Item = Result<Row, ArchiveError>>,
    pairs: impl Iterator<Item = Result<Pair, ArchiveError>>,
    should_stop: &dyn Fn() -> bool,
) -> Result<bool, String> {
    let io = |e: std::io::Error| e.to_string();
    let file = File::create(tmp).map_err(io)?;
    let mut blocks = Blocks {
        out: BufWriter::with_capacity(1 << 20, file),
        at: MAGIC.len() as u64,
    };
    blocks.out.write_all(MAGIC).map_err(io)?;
    let entries = std::cell::Cell::new(0u64);
    let counted = rows.inspect(|_| entries.set(entries.get() + 1));
    let size = |r: &Row| r.order_id.len() + r.customer.len() + r.entry.len() + 8;
    let Some((orders, last_row)) =
        blocks.section(counted, size, |r| r.order_id.clone(), should_stop)?
    else {
        return Ok(false);
    };
    let Some(last_row) = last_row else {
        return Ok(false);
    };
    let size = |(c, id): &Pair| c.len() + id.len() + 4;
    let Some((customers, _)) = blocks.section(pairs, size, Clone::clone, should_stop)? else {
        return Ok(false);
    };
    let index = Index {
        orders,
        customers,
        last_order: last_row.order_id,
        entries: entries.get(),
    };
    let raw = postcard::to_allocvec(&index).map_err(|e| e.to_string())?;
    let index_len = u32::try_from(raw.len()).map_err(|e| e.to_string())?;
    let index_at = blocks.at;
    let mut out = blocks.out;
    out.write_all(&raw).map_err(io)?;
    out.write_all(&index_at.to_le_bytes()).map_err(io)?;
    out.write_all(&index_len.to_le_bytes()).map_err(io)?;
    out.write_all(&crc32fast::hash(&raw).to_le_bytes())
        .map_err(io)?;
    out.write_all(END_MAGIC).map_err(io)?;
    let file = out.into_inner().map_err(|e| e.error().to_string())?;
    file.sync_all().map_err(io)?;
    Ok(true)
}
