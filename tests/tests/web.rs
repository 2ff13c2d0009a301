//! The web apps are served by the node itself (issue 13): embedded pages
//! with a strict Content-Security-Policy, revalidated by ETag, that load in
//! a real headless Chromium without errors.

use larder_tests::browser::{Browser, DESKTOP, PHONE};
use larder_tests::*;

#[tokio::test]
async fn the_node_serves_its_pages_with_a_policy_that_allows_only_itself() {
    let node = Node::start_demo().await;
    let http = reqwest::Client::new();
    for path in ["/", "/ops", "/kitchen"] {
        let r = http.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        let etag = h["etag"].to_str().unwrap().to_owned();
        let again = http
            .get(node.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} with its ETag");
    }
    let script = http.get(node.url("/web/larder.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    for missing in ["/web/nope.js", "/web/index.html", "/web/..%2FCargo.toml"] {
        let r = http.get(node.url(missing)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{missing}");
    }
}

#[tokio::test]
async fn every_page_loads_in_chromium_without_errors() {
    let node = Node::start_demo().await;
    for (path, size) in [("/", PHONE), ("/ops", DESKTOP), ("/kitchen", DESKTOP)] {
        let browser = Browser::start(size).await;
        browser.open(&node.url(path)).await;
        let title = browser.text("header h1").await;
        assert!(title.starts_with("Larder"), "{path}: {title:?}");
        assert_eq!(browser.page_errors().await, Vec::<String>::new(), "{path}");
    }
}
