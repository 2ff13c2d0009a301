//! The node's copy of the region directory: which district serves which
//! geohash prefixes, at which URL. Pure: the KV link (`fleet::kv`) feeds it
//! entries and the time it saw them; routing asks it.
//!
//! Liveness is judged by when *this node* last saw a district's heartbeat
//! (a monotonic instant), never by a timestamp another node wrote: nodes'
//! clocks may differ (and dev clocks are moved on purpose). While the link
//! to NATS is down nothing is expired: the node cannot see heartbeats, so
//! it keeps routing from what it last knew and says the copy is stale.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::{DistrictId, FridgeId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Most fridges a district lists in its entry: 4,096 ids of at most 64
/// bytes keep the entry under 300 KB, well inside NATS's 1 MB message.
/// A district with more lists the first 4,096 by id; a request naming one
/// of the others on another node answers 404 there, not 421 (the client
/// can still find the node by the fridge's point, `/v1/locate`).
pub const MAX_LISTED_FRIDGES: usize = 4_096;

/// One district's entry in the directory bucket (key `district.{id}`),
/// JSON so an operator can read it with `nats kv get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub district_id: DistrictId,
    /// Where clients reach the district's node (its `public_url`).
    pub url: String,
    pub geohash_prefixes: Vec<String>,
    /// The node's software version.
    pub version: String,
    /// Which process registered it (a new id per start): tells a restarted
    /// node's entry from its predecessor's.
    pub instance: String,
    /// The district's fridges, sorted, at most [`MAX_LISTED_FRIDGES`]: a
    /// request naming one on another node is sent here (421). Absent in
    /// entries of nodes from before the list (read as none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fridge_ids: Vec<FridgeId>,
}

impl Registration {
    /// Whether some point could be claimed by both: one prefix of one is a
    /// prefix of (or equal to) one of the other's.
    pub fn overlaps(&self, other: &Registration) -> bool {
        self.geohash_prefixes.iter().any(|a| {
            other
                .geohash_prefixes
                .iter()
                .any(|b| a.starts_with(b.as_str()) || b.starts_with(a.as_str()))
        })
    }

    /// Sets the listed fridges: sorted, without repeats, the first
    /// [`MAX_LISTED_FRIDGES`] of them.
    pub fn list_fridges(&mut self, fridges: impl IntoIterator<Item = FridgeId>) {
        let mut ids: Vec<FridgeId> = fridges.into_iter().collect();
        ids.sort();
        ids.dedup();
        ids.truncate(MAX_LISTED_FRIDGES);
        self.fridge_ids = ids;
    }

    /// Whether the district lists `fridge_id` (the list is sorted).
    pub fn has_fridge(&self, fridge_id: &FridgeId) -> bool {
        self.fridge_ids.binary_search(fridge_id).is_ok()
    }

    /// Whether the district serves the point with this geohash (of at least
    /// the prefixes' precision).
    pub fn serves(&self, geohash: &str) -> bool {
        self.geohash_prefixes
            .iter()
            .any(|p| geohash.starts_with(p.as_str()))
    }
}

/// The directory bucket's key of a district.
pub fn key(district_id: &DistrictId) -> String {
    format!("district.{district_id}")
}

#[derive(Debug, Clone)]
struct Seen {
    registration: Registration,
    /// The KV revision of the entry: older ones arriving late are ignored.
    revision: u64,
    at: Instant,
}

/// What the node knows of the directory, and how fresh it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Not joined yet (NATS not reached since start).
    Joining,
    /// Watching the bucket: entries are as live as their heartbeats.
    Live,
    /// The link is down: routing uses the last copy.
    Stale,
}

#[derive(Debug)]
pub struct Directory {
    /// A district whose heartbeat is older than this is gone.
    ttl: Duration,
    entries: BTreeMap<DistrictId, Seen>,
    freshness: Freshness,
    /// When the copy was last confirmed (a snapshot or an entry).
    updated: Option<Instant>,
}

impl Directory {
    pub fn new(ttl: Duration) -> Directory {
        Directory {
            ttl,
            entries: BTreeMap::new(),
            freshness: Freshness::Joining,
            updated: None,
        }
    }

    /// The whole bucket as read just now: replaces the copy (districts that
    /// left while the link was down are dropped here).
    pub fn replace(&mut self, entries: Vec<(Registration, u64)>, now: Instant) {
        self.entries = entries
            .into_iter()
            .map(|(mut registration, revision)| {
                let listed = std::mem::take(&mut registration.fridge_ids);
                registration.list_fridges(listed);
                let id = registration.district_id.clone();
                let seen = Seen {
                    registration,
                    revision,
                    at: now,
                };
                (id, seen)
            })
            .collect();
        self.freshness = Freshness::Live;
        self.updated = Some(now);
    }

    /// A put seen on the watch (a registration or a heartbeat).
    pub fn put(&mut self, mut registration: Registration, revision: u64, now: Instant) {
        self.updated = Some(now);
        // Sorted here, whoever wrote it: `has_fridge` searches.
        let listed = std::mem::take(&mut registration.fridge_ids);
        registration.list_fridges(listed);
        let id = registration.district_id.clone();
        if self.entries.get(&id).is_some_and(|s| s.revision > revision) {
            return;
        }
        self.entries.insert(
            id,
            Seen {
                registration,
                revision,
                at: now,
            },
        );
    }

    /// A delete seen on the watch (a district deregistered on shutdown).
    pub fn remove(&mut self, district_id: &DistrictId, revision: u64, now: Instant) {
        self.updated = Some(now);
        if self
            .entries
            .get(district_id)
            .is_some_and(|s| s.revision < revision)
        {
            self.entries.remove(district_id);
        }
    }

    /// The link went down: keep the copy, stop expiring it.
    pub fn link_lost(&mut self) {
        if self.freshness == Freshness::Live {
            self.freshness = Freshness::Stale;
        }
    }

    /// Drops districts whose heartbeat was not seen for the TTL (only while
    /// the copy is live: a stale copy cannot see heartbeats).
    pub fn expire(&mut self, now: Instant) {
        if self.freshness != Freshness::Live {
            return;
        }
        let ttl = self.ttl;
        self.entries
            .retain(|_, s| now.saturating_duration_since(s.at) <= ttl);
    }

    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// Seconds since the copy was last confirmed, if ever.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.updated.map(|u| now.saturating_duration_since(u))
    }

    pub fn districts(&self) -> impl Iterator<Item = &Registration> {
        self.entries.values().map(|s| &s.registration)
    }

    /// The district serving the point with this geohash, if any.
    pub fn locate(&self, geohash: &str) -> Option<&Registration> {
        self.districts().find(|r| r.serves(geohash))
    }

    /// The district listing `fridge_id`, if any.
    pub fn fridge_owner(&self, fridge_id: &FridgeId) -> Option<&Registration> {
        self.districts().find(|r| r.has_fridge(fridge_id))
    }

    /// Another district claiming a prefix that overlaps `me`'s.
    pub fn overlapping(&self, me: &Registration) -> Option<&Registration> {
        self.districts()
            .find(|r| r.district_id != me.district_id && r.overlaps(me))
    }

    /// The KV revision of a district's entry, if known.
    pub fn revision(&self, district_id: &DistrictId) -> Option<u64> {
        self.entries.get(district_id).map(|s| s.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &'static str, prefixes: &[&str]) -> Registration {
        Registration {
            district_id: DistrictId::from_static(id),
            url: format!("http://{id}.test"),
            geohash_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            version: "0".into(),
            instance: "i".into(),
            fridge_ids: vec![],
        }
    }

    #[test]
    fn a_fridge_is_found_in_its_districts_list_whatever_order_it_came_in() {
        let mut west = reg("west", &["dpsbu"]);
        west.fridge_ids = vec![FridgeId::from_static("f-w2"), FridgeId::from_static("f-w1")];
        let mut d = Directory::new(Duration::from_secs(15));
        d.replace(vec![(reg("a", &["dpsbv"]), 1)], Instant::now());
        d.put(west, 2, Instant::now());
        for id in ["f-w1", "f-w2"] {
            let owner = d.fridge_owner(&FridgeId::from_static(id));
            assert_eq!(owner.map(|r| r.district_id.as_str()), Some("west"), "{id}");
        }
        assert!(d.fridge_owner(&FridgeId::from_static("f-nobody")).is_none());
    }

    #[test]
    fn the_fridge_list_is_bounded_and_an_old_entry_reads_without_one() {
        let mut r = reg("a", &["dpsb"]);
        r.list_fridges((0..MAX_LISTED_FRIDGES + 10).map(|i| format!("f-{i:05}").parse().unwrap()));
        assert_eq!(r.fridge_ids.len(), MAX_LISTED_FRIDGES);
        assert!(r.has_fridge(&"f-00000".parse().unwrap()));
        let old = serde_json::json!({"district_id": "a", "url": "http://a", "geohash_prefixes": ["dpsb"],
            "version": "0", "instance": "i"});
        let old: Registration = serde_json::from_value(old).expect("an entry without fridge_ids");
        assert!(old.fridge_ids.is_empty());
        assert!(serde_json::to_value(&old)
            .unwrap()
            .get("fridge_ids")
            .is_none());
    }

    #[test]
    fn prefixes_overlap_when_one_extends_the_other() {
        assert!(reg("a", &["dpsb"]).overlaps(&reg("b", &["dps"])));
        assert!(reg("a", &["dps"]).overlaps(&reg("b", &["dpsbz"])));
        assert!(reg("a", &["dpsb"]).overlaps(&reg("b", &["dpsb"])));
        assert!(!reg("a", &["dpsb"]).overlaps(&reg("b", &["dpsc", "dps8"])));
    }

    #[test]
    fn a_silent_district_expires_only_while_the_copy_is_live() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(15);
        let mut d = Directory::new(ttl);
        d.replace(vec![(reg("a", &["dpsb"]), 1)], t0);
        d.put(reg("b", &["dpsc"]), 2, t0 + Duration::from_secs(10));
        d.link_lost();
        d.expire(t0 + Duration::from_secs(60));
        assert_eq!(d.districts().count(), 2, "a stale copy keeps routing");
        assert_eq!(d.freshness(), Freshness::Stale);
        d.replace(vec![(reg("b", &["dpsc"]), 3)], t0 + Duration::from_secs(61));
        d.expire(t0 + Duration::from_secs(70));
        assert_eq!(
            d.locate("dpsc1").map(|r| r.url.as_str()),
            Some("http://b.test")
        );
        assert!(
            d.locate("dpsb1").is_none(),
            "a left while the link was down"
        );
        d.expire(t0 + Duration::from_secs(77));
        assert!(d.locate("dpsc1").is_none(), "b's heartbeat is 16 s old");
    }

    #[test]
    fn late_entries_do_not_undo_newer_ones() {
        let t = Instant::now();
        let mut d = Directory::new(Duration::from_secs(15));
        let mut new = reg("a", &["dpsb"]);
        new.url = "http://new".into();
        d.put(new, 5, t);
        d.put(reg("a", &["dpsb"]), 4, t);
        assert_eq!(d.locate("dpsb").map(|r| r.url.as_str()), Some("http://new"));
        d.remove(&DistrictId::from_static("a"), 3, t);
        assert!(d.locate("dpsb").is_some(), "an older delete is ignored");
        d.remove(&DistrictId::from_static("a"), 6, t);
        assert!(d.locate("dpsb").is_none());
    }

    #[test]
    fn overlap_ignores_the_node_itself() {
        let mut d = Directory::new(Duration::from_secs(15));
        d.replace(
            vec![(reg("a", &["dpsb"]), 1), (reg("b", &["dpsc"]), 2)],
            Instant::now(),
        );
        assert!(d.overlapping(&reg("a", &["dpsb"])).is_none());
        let c = reg("c", &["dpsc9"]);
        assert_eq!(
            d.overlapping(&c).map(|r| r.district_id.to_string()),
            Some("b".to_string())
        );
    }
}
