//! The encoded `GET /v1/catalog` answers, kept per (rounded point, radius)
//! for the current catalog version, so a repeated read costs neither the
//! query nor the JSON encoding.
//!
//! - **Deterministic**: a request's point is rounded to a [`Cell`] (4
//!   decimal places of a degree, ~11 m) and the answer is computed *for the
//!   cell's point*, so an entry is a pure function of its key and the
//!   catalog version: no point is ever answered with another point's
//!   distances.
//! - **Invalidated by version**: the table holds one catalog version (the
//!   one the ETag names). A read at a newer version misses; the first insert
//!   at a newer version replaces the whole table, and an insert computed
//!   from an older snapshot is dropped, so no stale answer is ever kept.
//! - **Bounded**: at most `max_entries` entries and `max_bytes` charged
//!   bytes ([`charged_bytes`]: the identity body plus room for each
//!   compressed variant). An insert that would pass either bound starts the
//!   table over empty: no recency bookkeeping on the read path, and hot
//!   points come back on their next miss.
//! - **Readers never lock**: the table is an immutable `imbl` map behind an
//!   `ArcSwap`; a read is an atomic load and a map lookup, and writers
//!   replace the table (`rcu`, a persistent-map insert is O(log n)).
//! - **Compressed once, when first asked for**: gzip and brotli variants
//!   are made by the first request that accepts them and kept in the entry
//!   (`OnceLock`), so misses for clients that take identity pay nothing
//!   for compression.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use protocol::geo::GeoPoint;

/// Points are rounded to multiples of this many degrees before the query:
/// 1e-4° is 11.1 m north–south and 11.1 m × cos(latitude) east–west, so
/// the point answered for is at most ~8 m from the one asked about.
pub const CELL_DEGREES: f64 = 1e-4;
const CELLS_PER_DEGREE: f64 = 10_000.0;

/// Default bound on cached answers, in entries.
pub const MAX_ENTRIES_DEFAULT: usize = 4096;
/// Default bound on cached answers, in charged bytes (32 MiB).
pub const MAX_BYTES_DEFAULT: usize = 32 * 1024 * 1024;

/// Room charged per compressed variant beyond the identity body's length,
/// in bytes: a gzip or brotli stream of a short body can be a little
/// longer than the body (headers, trailer). A variant longer than that is
/// not kept (it is compressed per request instead), so the charge is a
/// true bound.
pub const VARIANT_SLACK_BYTES: usize = 256;
/// Charged per entry for its key, map node and bookkeeping, in bytes.
pub const ENTRY_OVERHEAD_BYTES: usize = 256;

/// gzip level: the default, a good ratio at ~tens of µs for a catalog.
const GZIP_LEVEL: u32 = 6;
/// brotli quality and window: 11 takes milliseconds on an 8 KB answer,
/// 6 is far faster and still smaller than gzip.
const BROTLI_QUALITY: u32 = 6;
const BROTLI_LGWIN: u32 = 20;
const BROTLI_BUFFER_BYTES: usize = 4096;

/// A point rounded to [`CELL_DEGREES`]: the part of the cache key (and the
/// point the answer is computed for) that comes from `lat`/`lon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    lat_e4: i32,
    lon_e4: i32,
}

impl Cell {
    pub fn of(at: &GeoPoint) -> Cell {
        // In range by GeoPoint's own checks (|lat| ≤ 90, |lon| ≤ 180), so
        // the products fit an i32 with room to spare.
        Cell {
            lat_e4: (at.lat * CELLS_PER_DEGREE).round() as i32,
            lon_e4: (at.lon * CELLS_PER_DEGREE).round() as i32,
        }
    }

    /// The cell's point, which answers for every point of the cell. It is
    /// in range since rounding a valid coordinate to 4 places keeps it
    /// within ±90 / ±180.
    pub fn point(&self) -> GeoPoint {
        GeoPoint {
            lat: f64::from(self.lat_e4) / CELLS_PER_DEGREE,
            lon: f64::from(self.lon_e4) / CELLS_PER_DEGREE,
        }
    }
}

/// What an answer is cached under, besides the catalog version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub cell: Cell,
    pub radius_m: u32,
}

/// A content coding the node can send a catalog in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    /// The `Content-Encoding` value; `None` for identity.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
        }
    }
}

/// One cached answer: the JSON body and its compressed variants.
#[derive(Debug)]
pub struct Entry {
    identity: Bytes,
    /// `Some(None)`: made once and longer than the entry was charged for,
    /// so it is compressed per request (never seen for JSON).
    gzip: OnceLock<Option<Bytes>>,
    br: OnceLock<Option<Bytes>>,
}

impl Entry {
    pub fn new(identity: Bytes) -> Entry {
        Entry {
            identity,
            gzip: OnceLock::new(),
            br: OnceLock::new(),
        }
    }

    /// The body in `coding`, compressing it the first time it is asked for.
    pub fn body(&self, coding: Coding) -> Bytes {
        let (slot, compress): (_, fn(&[u8]) -> Bytes) = match coding {
            Coding::Identity => return self.identity.clone(),
            Coding::Gzip => (&self.gzip, gzip),
            Coding::Br => (&self.br, brotli),
        };
        let room = self.identity.len() + VARIANT_SLACK_BYTES;
        let kept = slot.get_or_init(|| {
            let body = compress(&self.identity);
            (body.len() <= room).then_some(body)
        });
        match kept {
            Some(body) => body.clone(),
            None => compress(&self.identity),
        }
    }

    fn charged_bytes(&self) -> usize {
        charged_bytes(self.identity.len())
    }
}

/// What an entry with an identity body of `identity_bytes` counts against
/// the byte bound: the body, room for its gzip and brotli variants, and
/// [`ENTRY_OVERHEAD_BYTES`].
pub fn charged_bytes(identity_bytes: usize) -> usize {
    identity_bytes + 2 * (identity_bytes + VARIANT_SLACK_BYTES) + ENTRY_OVERHEAD_BYTES
}

fn gzip(body: &[u8]) -> Bytes {
    let out = Vec::with_capacity(body.len() / 4 + 64);
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

fn brotli(body: &[u8]) -> Bytes {
    let out = Vec::with_capacity(body.len() / 4 + 64);
    let mut enc =
        brotli::CompressorWriter::new(out, BROTLI_BUFFER_BYTES, BROTLI_QUALITY, BROTLI_LGWIN);
    // Writing into a Vec cannot fail; `into_inner` finishes the stream.
    let _ = enc.write_all(body);
    Bytes::from(enc.into_inner())
}

/// One catalog version's answers.
#[derive(Clone, Default)]
struct Table {
    version: u64,
    entries: imbl::HashMap<Key, Arc<Entry>>,
    bytes: usize,
}

/// Counts and sizes, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

/// The cache. `max_entries` 0 turns it off (every read is computed).
pub struct CatalogCache {
    table: ArcSwap<Table>,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CatalogCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> CatalogCache {
        CatalogCache {
            table: ArcSwap::from_pointee(Table::default()),
            max_entries,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The answer cached for `key` at catalog `version`, if any.
    pub fn get(&self, version: u64, key: &Key) -> Option<Arc<Entry>> {
        let table = self.table.load();
        let found = (table.version == version)
            .then(|| table.entries.get(key).cloned())
            .flatten();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// Keeps `entry` for `key` at `version`, unless the table already holds
    /// a newer version (the entry was computed from an older snapshot) or
    /// the entry alone is over the bounds.
    pub fn insert(&self, version: u64, key: Key, entry: Arc<Entry>) {
        let charge = entry.charged_bytes();
        if self.max_entries == 0 || charge > self.max_bytes {
            return;
        }
        self.table.rcu(|table| {
            let known = table.version == version && table.entries.contains_key(&key);
            if table.version > version || known {
                return Arc::clone(table);
            }
            let full =
                table.entries.len() >= self.max_entries || table.bytes + charge > self.max_bytes;
            let mut next = if table.version < version || full {
                Table {
                    version,
                    ..Table::default()
                }
            } else {
                Table::clone(table)
            };
            next.entries.insert(key, Arc::clone(&entry));
            next.bytes += charge;
            Arc::new(next)
        });
    }

    pub fn stats(&self) -> Stats {
        let table = self.table.load();
        Stats {
            entries: table.entries.len(),
            bytes: table.bytes,
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn key(lat: f64, lon: f64, radius_m: u32) -> Key {
        let at = GeoPoint::new(lat, lon).unwrap();
        Key {
            cell: Cell::of(&at),
            radius_m,
        }
    }

    fn entry(len: usize) -> Arc<Entry> {
        let body: Vec<u8> = (0..len).map(|i| b"{\"fridges\":[]}"[i % 14]).collect();
        Arc::new(Entry::new(Bytes::from(body)))
    }

    #[test]
    fn points_in_one_cell_share_a_key_and_its_point() {
        let a = key(42.33161, -83.04659, 2000);
        let b = key(42.33164, -83.04661, 2000);
        assert_eq!(a, b);
        assert_eq!(a.cell.point(), GeoPoint::new(42.3316, -83.0466).unwrap());
        assert_ne!(a, key(42.33166, -83.0466, 2000), "the next cell north");
        assert_ne!(a, key(42.3316, -83.0466, 2001), "another radius");
    }

    #[test]
    fn rounding_keeps_the_edges_of_the_globe_in_range() {
        for (lat, lon) in [(90.0, 180.0), (-89.99999, -179.99999), (0.0, -0.0)] {
            let p = Cell::of(&GeoPoint::new(lat, lon).unwrap()).point();
            assert!(GeoPoint::new(p.lat, p.lon).is_ok(), "{lat},{lon} → {p:?}");
        }
        assert_eq!(key(0.0, 0.0, 1), key(-0.0, -0.0, 1), "one cell for ±0");
    }

    #[test]
    fn a_hit_returns_the_same_bytes_and_counts() {
        let cache = CatalogCache::new(16, MAX_BYTES_DEFAULT);
        let k = key(42.3316, -83.0466, 2000);
        assert!(cache.get(7, &k).is_none());
        let e = entry(500);
        cache.insert(7, k, e.clone());
        let hit = cache.get(7, &k).expect("a hit");
        assert_eq!(hit.body(Coding::Identity), e.body(Coding::Identity));
        let s = cache.stats();
        assert_eq!((s.entries, s.hits, s.misses), (1, 1, 1));
        assert_eq!(s.bytes, charged_bytes(500));
    }

    #[test]
    fn a_new_version_drops_every_entry_and_an_old_one_is_not_kept() {
        let cache = CatalogCache::new(16, MAX_BYTES_DEFAULT);
        let (a, b) = (key(42.0, -83.0, 100), key(42.1, -83.0, 100));
        cache.insert(7, a, entry(10));
        cache.insert(7, b, entry(10));
        assert!(cache.get(8, &a).is_none(), "version 8 does not read 7's");
        cache.insert(8, a, entry(20));
        assert_eq!(cache.stats().entries, 1, "7's entries are gone");
        assert!(cache.get(7, &b).is_none());
        // Computed from an older snapshot, after 8's first insert.
        cache.insert(7, b, entry(10));
        assert!(cache.get(7, &b).is_none());
        assert!(cache.get(8, &b).is_none());
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn many_distinct_points_stay_within_both_bounds() {
        let max_bytes = 20 * charged_bytes(1000);
        let cache = CatalogCache::new(50, max_bytes);
        for i in 0..5_000 {
            let k = key(42.0 + f64::from(i) * 1e-3, -83.0, 2000);
            cache.insert(1, k, entry(1000));
            let s = cache.stats();
            assert!(s.entries <= 20 && s.bytes <= max_bytes, "{s:?} at {i}");
            assert!(cache.get(1, &k).is_some(), "the newest entry is kept");
        }
        let small = CatalogCache::new(50, MAX_BYTES_DEFAULT);
        for i in 0..5_000 {
            small.insert(1, key(-42.0 - f64::from(i) * 1e-3, 10.0, 1), entry(10));
            assert!(small.stats().entries <= 50);
        }
    }

    #[test]
    fn an_answer_over_the_byte_bound_or_a_zero_bound_is_not_kept() {
        let cache = CatalogCache::new(16, charged_bytes(100));
        cache.insert(1, key(1.0, 1.0, 1), entry(101));
        assert_eq!(cache.stats().entries, 0);
        let off = CatalogCache::new(0, MAX_BYTES_DEFAULT);
        off.insert(1, key(1.0, 1.0, 1), entry(10));
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn compressed_variants_decode_to_the_identity_body_and_are_made_once() {
        let e = entry(8_000);
        let identity = e.body(Coding::Identity);
        let gz = e.body(Coding::Gzip);
        assert!(gz.len() < identity.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, identity);
        let br = e.body(Coding::Br);
        let mut out = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, identity);
        // The same allocation the second time: kept, not recompressed.
        assert_eq!(e.body(Coding::Gzip).as_ptr(), gz.as_ptr());
        assert_eq!(e.body(Coding::Br).as_ptr(), br.as_ptr());
    }

    #[test]
    fn a_tiny_body_still_gets_its_variants() {
        let e = entry(3);
        for coding in [Coding::Gzip, Coding::Br] {
            let body = e.body(coding);
            assert!(body.len() <= 3 + VARIANT_SLACK_BYTES, "{coding:?}");
        }
    }
}
