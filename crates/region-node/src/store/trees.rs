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

use super::StoreError;

/// The first tree's name (seqs from 1); later ones add `.<first:020>`.
pub const FIRST_TREE: &str = "log";

/// The trees in seq order; the last one takes the appends.
pub struct Trees {
    db: sled::Db,
    list: Vec<(u64, sled::Tree)>,
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
        match self.from(seq).first() {
            Some((_, tree)) => Ok(tree.get(seq.to_be_bytes())?),
            None => Ok(None),
        }
    }

    /// The last seq any tree holds.
    pub fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        for (_, tree) in self.list.iter().rev() {
            if let Some((key, _)) = tree.last()? {
                return Ok(Some(seq_of(&key)));
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
        tree.range(from.to_be_bytes()..=to.to_be_bytes())
            .map(|item| {
                let (key, value) = item?;
                Ok((seq_of(&key), value))
            })
    })
}
