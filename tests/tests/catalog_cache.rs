//! Issue 15, part 3: `GET /v1/catalog` answers from a cache of encoded
//! answers (per point rounded to 4 decimal places, radius and catalog
//! version), precompressed for clients that accept gzip or br.

use std::io::Read;

use larder_tests::*;

/// A raw answer: status, the headers that matter here, the bytes as sent.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// GETs `path` with `headers`, without decoding anything (the harness's
/// reqwest has no compression features: it neither asks nor decodes).
async fn raw(node: &Node, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = node.http.get(node.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Raw {
        status,
        headers,
        body,
    }
}

fn at(lat: f64, lon: f64, radius_m: u32) -> String {
    format!("/v1/catalog?lat={lat}&lon={lon}&radius_m={radius_m}")
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip stream");
    out
}

fn unbrotli(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(body, 4096)
        .read_to_end(&mut out)
        .expect("a brotli stream");
    out
}

async fn cache_counts(node: &Node) -> (u64, u64, u64) {
    (
        node.metric("larder_catalog_cache_hits_total").await,
        node.metric("larder_catalog_cache_misses_total").await,
        node.metric("larder_catalog_cache_entries").await,
    )
}

/// Sets the first listed meal of the first listed fridge of `answer` to 7
/// units more than it shows; returns the fridge, the meal and the units.
async fn restock_first_meal(node: &Node, answer: &serde_json::Value) -> (String, String, u32) {
    let first = &answer["fridges"][0];
    let fridge = first["fridge_id"].as_str().expect("a fridge").to_owned();
    let meal = first["meals"][0]["meal_id"]
        .as_str()
        .expect("a meal")
        .to_owned();
    let units = first["meals"][0]["available"].as_u64().expect("units") as u32 + 7;
    let set = node.admin().set_stock(&fridge, &[(&meal, units)]).await;
    assert_eq!(set.status, 200, "{}", set.body);
    (fridge, meal, units)
}

#[tokio::test]
async fn a_hit_sends_the_bytes_of_the_miss_and_a_stock_change_is_read_at_once() {
    let node = Node::start_demo().await;
    let path = at(DOWNTOWN.0, DOWNTOWN.1, 2_000);
    let miss = raw(&node, &path, &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(cache_counts(&node).await, (0, 1, 1));
    let hit = raw(&node, &path, &[]).await;
    assert_eq!(cache_counts(&node).await, (1, 1, 1));
    assert_eq!(hit.body, miss.body, "a hit is byte for byte the miss");
    assert_eq!(hit.header("etag"), miss.header("etag"));
    assert_eq!(hit.header("vary"), Some("Accept-Encoding"));
    assert_eq!(hit.header("content-encoding"), None);

    // A point ~1 m away rounds to the same cell: the same answer, computed
    // for the cell's point. A point 1 km away has distances of its own.
    let near = raw(&node, &at(DOWNTOWN.0 + 0.00001, DOWNTOWN.1, 2_000), &[]).await;
    assert_eq!(near.body, miss.body);
    assert_eq!(cache_counts(&node).await, (2, 1, 1));
    let far = raw(&node, &at(DOWNTOWN.0 + 0.009, DOWNTOWN.1, 2_000), &[]).await;
    assert_ne!(far.json()["fridges"], miss.json()["fridges"]);
    assert_eq!(cache_counts(&node).await, (2, 2, 2));

    // A stock change is a new catalog version: the next read shows it.
    let before = miss.json();
    let (fridge, meal, units) = restock_first_meal(&node, &before).await;
    let after = raw(&node, &path, &[]).await;
    let shown = after.json();
    assert!(shown["version"].as_u64() > before["version"].as_u64());
    assert_eq!(shown["fridges"][0]["fridge_id"], fridge.as_str());
    let level = shown["fridges"][0]["meals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meal_id"] == meal.as_str())
        .expect("the meal is still listed");
    assert_eq!(level["available"], units);
    assert_ne!(after.header("etag"), miss.header("etag"));
    assert_eq!(
        cache_counts(&node).await.2,
        1,
        "the old version's entries are gone"
    );
}

#[tokio::test]
async fn compressed_answers_decode_to_the_identity_answer() {
    let node = Node::start_demo().await;
    let path = at(DOWNTOWN.0, DOWNTOWN.1, 10_000);
    let plain = raw(&node, &path, &[]).await;
    let tag = plain.header("etag").unwrap().to_owned();
    let open = tag.trim_end_matches('"');

    let gz = raw(&node, &path, &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gz.header("content-type"), Some("application/json"));
    assert_eq!(gz.header("etag"), Some(format!("{open}-gzip\"").as_str()));
    assert!(gz.body.len() < plain.body.len());
    assert_eq!(gunzip(&gz.body), plain.body);

    let br = raw(&node, &path, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("etag"), Some(format!("{open}-br\"").as_str()));
    assert_eq!(unbrotli(&br.body), plain.body);

    // Made once per entry: the second gzip answer is the same bytes.
    let again = raw(&node, &path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(again.body, gz.body);

    for refused in ["gzip;q=0", "br;q=0, gzip;q=0", "identity", "deflate"] {
        let r = raw(&node, &path, &[("accept-encoding", refused)]).await;
        assert_eq!(r.header("content-encoding"), None, "{refused}");
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{refused}");
        assert_eq!(r.body, plain.body, "{refused}");
    }
    let gzip_only = raw(&node, &path, &[("accept-encoding", "br;q=0, gzip")]).await;
    assert_eq!(gzip_only.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn a_matching_etag_is_a_304_in_every_coding_until_the_catalog_changes() {
    let node = Node::start_demo().await;
    let path = at(DOWNTOWN.0, DOWNTOWN.1, 2_000);
    let gz = raw(&node, &path, &[("accept-encoding", "gzip")]).await;
    let gz_tag = gz.header("etag").unwrap().to_owned();
    let plain = raw(&node, &path, &[]).await;
    let tag = plain.header("etag").unwrap().to_owned();

    let same = raw(&node, &path, &[("if-none-match", &tag)]).await;
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    assert_eq!(same.header("etag"), Some(tag.as_str()));
    assert_eq!(same.header("vary"), Some("Accept-Encoding"));
    assert_eq!(same.header("cache-control"), Some("no-cache"));

    let weak = format!("W/{gz_tag}");
    let revalidated = raw(
        &node,
        &path,
        &[("accept-encoding", "gzip"), ("if-none-match", &weak)],
    )
    .await;
    assert_eq!(revalidated.status, 304, "a weak tag compares weakly");
    assert_eq!(revalidated.header("etag"), Some(gz_tag.as_str()));

    let other = raw(&node, &path, &[("if-none-match", "\"someone-else-1\"")]).await;
    assert_eq!(other.status, 200);

    let (hits, misses, _) = cache_counts(&node).await;
    restock_first_meal(&node, &plain.json()).await;
    let stale = raw(&node, &path, &[("if-none-match", &tag)]).await;
    assert_eq!(stale.status, 200);
    assert_ne!(stale.header("etag"), Some(tag.as_str()));
    assert_eq!(cache_counts(&node).await.0, hits);
    assert_eq!(cache_counts(&node).await.1, misses + 1);
}

#[tokio::test]
async fn a_bad_query_is_refused_and_caches_nothing() {
    let node = Node::start_demo().await;
    for bad in [
        "/v1/catalog?lat=91&lon=-83.0466",
        "/v1/catalog?lat=42.3316&lon=-183",
        "/v1/catalog?lat=abc&lon=-83.0466",
        "/v1/catalog?lat=42.3316",
        "/v1/catalog?lat=42.3316&lon=-83.0466&radius_m=0",
        "/v1/catalog?lat=42.3316&lon=-83.0466&radius_m=50001",
        "/v1/catalog?lat=42.3316&lon=-83.0466&radius=5",
    ] {
        let r = raw(&node, bad, &[("accept-encoding", "gzip")]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["code"], "invalid_query", "{bad}");
        assert_eq!(r.header("content-encoding"), None, "{bad}");
    }
    assert_eq!(cache_counts(&node).await, (0, 0, 0));
    assert_eq!(node.metric("larder_catalog_cache_bytes").await, 0);
}

#[tokio::test]
async fn the_cache_stays_within_its_bounds_under_many_distinct_points() {
    const MAX_ENTRIES: u64 = 8;
    const MAX_BYTES: u64 = 60_000;
    let node = Node::start(&[
        "--demo",
        "--catalog-cache-max-entries",
        "8",
        "--catalog-cache-max-bytes",
        "60000",
        "--catalog-reads-per-sec-per-ip",
        "0",
    ])
    .await;
    for i in 0..60 {
        // Cells ~110 m apart, north of downtown.
        let path = at(DOWNTOWN.0 + f64::from(i) * 0.001, DOWNTOWN.1, 1_500);
        let r = raw(&node, &path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(r.status, 200, "{path}");
        let entries = node.metric("larder_catalog_cache_entries").await;
        let bytes = node.metric("larder_catalog_cache_bytes").await;
        assert!(
            (1..=MAX_ENTRIES).contains(&entries),
            "{entries} entries after {path}"
        );
        assert!(bytes <= MAX_BYTES, "{bytes} bytes after {path}");
    }
    assert_eq!(cache_counts(&node).await.1, 60, "every point was a miss");
}
