//! The sled part of the log: a run of trees, each holding consecutive seqs
//! from the one its name gives (`log` from 1, `log.<first:020>` after it).
//! The writer starts a new tree at a batch boundary once the newest holds
//! a segment's worth of records, so sealing drops whole trees.
//!
//! Why: removing sealed records key by key costs sled as much as writing
//! them. In one batch, 65,536 removals held the writer's appends for
//! ~400 ms (confirm p99 390-400 ms against 23 ms); one at a time they took
//! ~15 % of the confirm rate on two saturated cores (BENCHMARKS.md, "Sealed
//! segments"). Dropping a tree frees it page by page (~11 records each).
//!
//! A key holds a *group* of consecutive records ([`group`]), not one
//! record: the writer's batch becomes one sled key per
//! [`GROUP_MAX_BYTES`] of records. Why: sled's cost is per key (a descent
//! from the root, a delta on the page, a split every 16 keys), and with one
//! key per event it was ~25 % of the node's CPU under the order load
//! (docs/perf, 2026-11-30). A key still names its first record's seq, so
//! the trees stay ordered by seq; a value is either one record (as every
//! key was before groups, and as a restore writes them) or a group, told
//! apart by its first two bytes ([`GROUP_TAG`]).

use super::StoreError;

/// The first tree's name (seqs from 1); later ones add `.<first:020>`.
pub const FIRST_TREE: &str = "log";

/// The trees in seq order; the last one takes the appends.
pub struct Trees {
    db: sled::Db,
    list: Vec<(u64, sled::Tree)>,
}

/// A group's first two bytes. A record starts with its schema version
/// (`protocol::codec`, little-endian), which is never 0.
pub const GROUP_TAG: [u8; 2] = [0, 0];

/// A group is closed once it holds this many bytes of records. Why this
/// size: sled rewrites a leaf (up to 16 keys) whole every few changes, and
/// a page past ~128 KiB (a quarter of its 512 KiB segment) goes to a file
/// of its own (`blobs/`, one more fsync); 16 groups of 4 KiB stay well
/// under that, and ~20 records a key already take most of the per-key
/// cost away.
pub const GROUP_MAX_BYTES: usize = 4 * 1024;

/// Encoded records `(seq, bytes)` with consecutive seqs as sled entries:
/// `(first seq, value)`, each value one group of at most
/// [`GROUP_MAX_BYTES`] (or a lone record larger than that, stored as it
/// is). Layout of a group: [`GROUP_TAG`], then per record its length
/// (`u32` LE) and its bytes. Readers number a group's records from its
/// key, so the seqs must be consecutive.
pub fn group(records: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    let mut entries: Vec<(u64, Vec<u8>)> = vec![];
    let mut open: Option<(u64, Vec<u8>)> = None;
    let mut previous: Option<u64> = None;
    for (seq, bytes) in records {
        debug_assert!(
            previous.is_none_or(|p| seq == p + 1),
            "records are grouped with consecutive seqs"
        );
        previous = Some(seq);
        let framed_bytes = 4 + bytes.len();
        if let Some((_, value)) = &open {
            if value.len() + framed_bytes > GROUP_MAX_BYTES {
                entries.extend(open.take());
            }
        }
        if open.is_none() && GROUP_TAG.len() + framed_bytes > GROUP_MAX_BYTES {
            entries.push((seq, bytes));
            continue;
        }
        let (_, value) = open.get_or_insert_with(|| (seq, GROUP_TAG.to_vec()));
        // A record is far below 4 GiB: the codec's records are bounded by
        // the writer's batch, and sealed segments refuse more than 64 MiB.
        value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        value.extend_from_slice(&bytes);
    }
    entries.extend(open);
    entries
}

/// The records of the sled entry `(key, value)`: one for a plain record,
/// each of a group's otherwise, seqs counting up from the key's. Each shares
/// the value's buffer. A group cut short yields an error, not a silent end.
fn records_of(key: &[u8], value: sled::IVec) -> Records {
    let first = seq_of(key);
    if !value.starts_with(&GROUP_TAG) {
        return Box::new(std::iter::once(Ok((first, value))));
    }
    let (mut at, mut seq) = (GROUP_TAG.len(), first);
    Box::new(std::iter::from_fn(move || {
        if at >= value.len() {
            return None;
        }
        let len = value
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize);
        let Some(bytes) = len.filter(|len| at + 4 + len <= value.len()) else {
            at = value.len();
            return Some(Err(StoreError::CutShort { first, seq }));
        };
        let record = (seq, value.subslice(at + 4, bytes));
        at += 4 + bytes;
        seq += 1;
        Some(Ok(record))
    }))
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn name_of(first: u64) -> String {
    if first <= 1 {
        FIRST_TREE.to_string()
    } else {
        format!("{FIRST_TREE}.{first:020}")
    }
}

impl Trees {
    /// The log's trees in `db` (the first one created if none), dropping
    /// any whose every seq is `<= sealed_upto` (a seal that stopped
    /// between its segment and the drop).
    pub fn open(db: &sled::Db, sealed_upto: u64) -> Result<Trees, StoreError> {
        let mut list = vec![];
        for name in db.tree_names() {
            let Ok(name) = std::str::from_utf8(&name) else {
                continue;
            };
            let first = match name.strip_prefix(FIRST_TREE) {
                Some("") => 1,
                Some(rest) => match rest.strip_prefix('.').map(str::parse::<u64>) {
                    Some(Ok(first)) => first,
                    _ => continue,
                },
                None => continue,
            };
            list.push((first, db.open_tree(name)?));
        }
        if list.is_empty() {
            list.push((1, db.open_tree(FIRST_TREE)?));
        }
        list.sort_by_key(|(first, _)| *first);
        let mut trees = Trees {
            db: db.clone(),
            list,
        };
        while trees
            .oldest_closed()
            .is_some_and(|(_, last)| last <= sealed_upto)
        {
            if let Some(name) = trees.take_oldest() {
                drop_tree(db, &name)?;
            }
        }
        Ok(trees)
    }

    /// The tree taking appends.
    pub fn head(&self) -> sled::Tree {
        self.list
            .last()
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| unreachable!("a log always has a tree: open creates the first"))
    }

    /// Whether a batch from `seq` needs a new head: the current one holds
    /// `per_tree` records or more (0: never).
    pub fn is_full(&self, seq: u64, per_tree: u64) -> bool {
        let head_first = self.list.last().map_or(1, |(first, _)| *first);
        per_tree > 0 && seq >= head_first.saturating_add(per_tree)
    }

    /// Starts a new head for a batch from `seq` if [`Trees::is_full`].
    pub fn rotate_for(&mut self, seq: u64, per_tree: u64) -> Result<(), StoreError> {
        if !self.is_full(seq, per_tree) {
            return Ok(());
        }
        let tree = self.db.open_tree(name_of(seq))?;
        self.list.push((seq, tree));
        Ok(())
    }

    /// The oldest tree's seqs `(first, last)` if a newer tree follows it
    /// (so nothing is appended to it any more).
    pub fn oldest_closed(&self) -> Option<(u64, u64)> {
        match self.list.as_slice() {
            [(first, _), (next, _), ..] => Some((*first, next - 1)),
            _ => None,
        }
    }

    /// Forgets the oldest tree (if a newer one follows) and returns its
    /// name, for [`drop_tree`] once no lock is held: freeing its pages can
    /// read them from disk, and the writer must not wait for that.
    pub fn take_oldest(&mut self) -> Option<String> {
        if self.list.len() < 2 {
            return None;
        }
        let (first, _) = self.list.remove(0);
        Some(name_of(first))
    }

    /// Handles of the trees that may hold seqs `>= from`, with their first
    /// seq, oldest first.
    pub fn from(&self, from: u64) -> Vec<(u64, sled::Tree)> {
        let start = self.list.partition_point(|(first, _)| *first <= from);
        self.list[start.saturating_sub(1)..].to_vec()
    }

    /// Record `seq`, if a tree holds it.
    pub fn get(&self, seq: u64) -> Result<Option<sled::IVec>, StoreError> {
        let Some((_, tree)) = self.from(seq).into_iter().next() else {
            return Ok(None);
        };
        // The entry holding `seq` is the last one keyed at or before it.
        let Some((key, value)) = tree.get_lt(seq.saturating_add(1).to_be_bytes())? else {
            return Ok(None);
        };
        for record in records_of(&key, value) {
            let (at, bytes) = record?;
            if at == seq {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The last seq any tree holds.
    pub fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        for (_, tree) in self.list.iter().rev() {
            if let Some((key, value)) = tree.last()? {
                let mut last = None;
                for record in records_of(&key, value) {
                    last = Some(record?.0);
                }
                return Ok(last);
            }
        }
        Ok(None)
    }
}

/// Frees a tree taken with [`Trees::take_oldest`]: sled frees it page by
/// page (its records are sealed).
pub fn drop_tree(db: &sled::Db, name: &str) -> Result<(), StoreError> {
    db.drop_tree(name)?;
    Ok(())
}

/// The records `from..=to` across `trees` (from [`Trees::from`]), in
/// order, read lazily (a sled iterator owns its tree handle).
pub fn range(
    trees: Vec<(u64, sled::Tree)>,
    from: u64,
    to: u64,
) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> {
    // An empty span reads nothing (and sled refuses a reversed range).
    let trees = if from > to { vec![] } else { trees };
    trees.into_iter().flat_map(move |(_, tree)| {
        // Start at the entry holding `from`: a group keyed before it may
        // hold it.
        let start = match tree.get_lt(from.saturating_add(1).to_be_bytes()) {
            Ok(holding) => holding.map_or(from, |(key, _)| seq_of(&key)),
            Err(e) => return Entries::Failed(Some(e.into())),
        };
        let records = tree
            .range(start.to_be_bytes()..=to.to_be_bytes())
            .flat_map(|item| -> Entries {
                match item {
                    Ok((key, value)) => Entries::Read(records_of(&key, value)),
                    Err(e) => Entries::Failed(Some(e.into())),
                }
            })
            .filter(move |r| !matches!(r, Ok((seq, _)) if *seq < from || *seq > to));
        Entries::Read(Box::new(records))
    })
}

type Records = Box<dyn Iterator<Item = Result<(u64, sled::IVec), StoreError>>>;

/// Records read, or the one error that stopped reading them.
enum Entries {
    Read(Records),
    Failed(Option<StoreError>),
}

impl Iterator for Entries {
    type Item = Result<(u64, sled::IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Entries::Read(records) => records.next(),
            Entries::Failed(error) => error.take().map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, len: usize) -> (u64, Vec<u8>) {
        // A record starts with a non-zero schema version, as the codec's do.
        let mut bytes = vec![1, 0];
        bytes.resize(len.max(2), (seq % 251) as u8);
        (seq, bytes)
    }

    fn tree_with(entries: &[(u64, Vec<u8>)]) -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree(FIRST_TREE).unwrap();
        for (first, value) in entries {
            tree.insert(first.to_be_bytes(), value.as_slice()).unwrap();
        }
        tree
    }

    fn read(tree: &sled::Tree, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        range(vec![(1, tree.clone())], from, to)
            .map(|r| r.map(|(seq, bytes)| (seq, bytes.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_becomes_few_keys_and_reads_back_record_by_record() {
        let records: Vec<_> = (1..=300).map(|seq| record(seq, 120)).collect();
        let entries = group(records.clone());
        assert!(
            entries.len() <= 10,
            "{} keys for 300 records",
            entries.len()
        );
        assert!(entries.iter().all(|(_, v)| v.len() <= GROUP_MAX_BYTES));
        let tree = tree_with(&entries);
        assert_eq!(read(&tree, 1, 300), records);
        // From and to inside groups.
        assert_eq!(read(&tree, 37, 211), records[36..211].to_vec());
        assert_eq!(read(&tree, 300, 300), records[299..].to_vec());
        assert!(read(&tree, 301, 400).is_empty());
    }

    #[test]
    fn get_and_last_seq_find_records_inside_groups() {
        let records: Vec<_> = (5..=104).map(|seq| record(seq, 90)).collect();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let trees = Trees::open(&db, 4).unwrap();
        for (first, value) in group(records.clone()) {
            trees.head().insert(first.to_be_bytes(), value).unwrap();
        }
        for (seq, bytes) in &records {
            assert_eq!(trees.get(*seq).unwrap().unwrap().to_vec(), *bytes);
        }
        assert_eq!(trees.get(105).unwrap(), None);
        assert_eq!(trees.last_seq().unwrap(), Some(104));
    }

    #[test]
    fn lone_large_records_and_single_record_keys_read_as_before() {
        // Keys written one record each (before groups, or by a restore),
        // then a batch with a record larger than a group.
        let mut entries: Vec<_> = (1..=3).map(|seq| record(seq, 50)).collect();
        let batch = vec![record(4, 60), record(5, GROUP_MAX_BYTES * 2), record(6, 70)];
        let grouped = group(batch.clone());
        assert_eq!(grouped.len(), 3, "the large record stands alone");
        assert_eq!(grouped[1], batch[1]);
        entries.extend(grouped);
        let tree = tree_with(&entries);
        let mut all: Vec<_> = (1..=3).map(|seq| record(seq, 50)).collect();
        all.extend(batch);
        assert_eq!(read(&tree, 1, 6), all);
        assert_eq!(read(&tree, 5, 6), all[4..].to_vec());
    }

    #[test]
    fn a_group_cut_short_is_an_error_not_an_end() {
        let mut entries = group(vec![record(1, 40), record(2, 40)]);
        let value = &mut entries[0].1;
        value.truncate(value.len() - 3);
        let tree = tree_with(&entries);
        let read: Vec<_> = range(vec![(1, tree)], 1, 2).collect();
        assert!(read[0].is_ok());
        assert!(
            matches!(read[1], Err(StoreError::CutShort { first: 1, seq: 2 })),
            "{read:?}"
        );
    }
}
