//! A real headless Chromium driven over WebDriver, for the web apps' tests
//! (`tests/tests/web*.rs`).
//!
//! Each [`Browser`] starts its own `chromedriver` on a free port (the
//! driver starts Chromium with a fresh profile in a temp dir) and is killed
//! with its whole process group when dropped, also when a test fails.
//! `scripts/ensure-chromium` installs Debian's `chromium` and
//! `chromium-driver`; `CHROMEDRIVER` and `CHROMIUM` override the paths.
//!
//! Screenshots: [`Browser::screenshot`] writes a PNG to
//! `$LARDER_SCREENSHOTS/{name}.png` when that variable is set (the README
//! says how the ones in `docs/screenshots/` were made), and does nothing
//! otherwise, so ordinary runs leave the tree alone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};

use crate::{leads_a_group, ChildGuard};

/// A phone-sized window: the customer app is used on phones.
pub const PHONE: (u32, u32) = (390, 844);
/// A laptop-sized window for the dashboards.
pub const DESKTOP: (u32, u32) = (1280, 900);

/// How long an element or condition may take to appear in a page.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(15);

pub struct Browser {
    pub client: Client,
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `size`.
    pub async fn start(size: (u32, u32)) -> Browser {
        let driver_path = chromedriver_path();
        assert!(
            driver_path.exists(),
            "{} is missing: run scripts/ensure-chromium (the README's test command does)",
            driver_path.display()
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let mut cmd = Command::new(&driver_path);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver =
            ChildGuard::group(leads_a_group(&mut cmd).spawn().expect("start chromedriver"));
        let client = connect(port, &capabilities(size, &profile)).await;
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    /// Waits for a CSS selector to match a displayed element; panics with
    /// `what` after [`PAGE_DEADLINE`].
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PAGE_DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {PAGE_DEADLINE:?}: {e}"))
    }

    /// The text of the first element matching `css` (waits for it).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// Waits until the text of `css` satisfies `cond`; returns it.
    pub async fn await_text(&self, css: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < PAGE_DEADLINE {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                last = el.text().await.unwrap_or_default();
                if cond(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: {css} still reads {last:?} after {PAGE_DEADLINE:?}");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Writes `$LARDER_SCREENSHOTS/{name}.png` when the variable is set.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("LARDER_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Runs `script` in the page; its return value (panics on a script error).
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// Presses and releases one key, as a keyboard does: the key goes to
    /// whatever has the focus.
    pub async fn press(&self, key: Key) {
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client
            .perform_actions(actions)
            .await
            .expect("press a key");
    }

    /// Presses Tab until the focused element matches `css` (at most
    /// `max_tabs` times): what a keyboard user does to reach a control.
    pub async fn tab_to(&self, css: &str, max_tabs: usize) {
        let script = format!(
            "return document.activeElement !== null && document.activeElement.matches({});",
            Value::String(css.to_owned())
        );
        for _ in 0..max_tabs {
            self.press(Key::Tab).await;
            if self.execute(&script).await == Value::Bool(true) {
                return;
            }
        }
        panic!("{css} never had the focus after {max_tabs} presses of Tab");
    }

    /// Whether the focused element shows its focus (`:focus-visible`).
    pub async fn focus_is_visible(&self) -> bool {
        self.execute("return document.activeElement.matches(':focus-visible');")
            .await
            == Value::Bool(true)
    }

    /// Scrolls the first element matching `css` to the top of the window
    /// (for a screenshot of that part of the page).
    pub async fn scroll_to(&self, css: &str) {
        self.find(css).await;
        let script = format!(
            "document.querySelector({}).scrollIntoView({{block: 'start'}}); return true;",
            Value::String(css.to_owned())
        );
        self.execute(&script).await;
    }

    /// Errors the page met (uncaught exceptions and rejected promises,
    /// which `larder.js` keeps in `window.larderErrors`): a page test
    /// asserts there are none.
    pub async fn page_errors(&self) -> Vec<String> {
        match self
            .client
            .execute("return window.larderErrors || [];", vec![])
            .await
        {
            Ok(Value::Array(errors)) => errors
                .into_iter()
                .map(|e| e.as_str().unwrap_or_default().to_owned())
                .collect(),
            Ok(other) => vec![format!("unexpected larderErrors: {other}")],
            Err(e) => vec![format!("could not read larderErrors: {e}")],
        }
    }
}

/// Headless Chromium with the flags this machine's closed network needs
/// (no background networking, sync, updates or QUIC), as root (no sandbox).
fn capabilities(size: (u32, u32), profile: &tempfile::TempDir) -> Map<String, Value> {
    let args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--window-size={},{}", size.0, size.1),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium_path(),
            "args": args,
        },
    });
    // A headless window is at least 500 px wide: a phone's viewport needs
    // Chromium's device emulation (which also makes it a touch screen).
    if size.0 < 500 {
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": {"width": size.0, "height": size.1, "pixelRatio": 1},
        });
    }
    caps.as_object().cloned().unwrap_or_default()
}

/// Connects to the driver once it listens (it takes a moment to start).
async fn connect(port: u16, caps: &Map<String, Value>) -> Client {
    let start = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return client,
            Err(e) if start.elapsed() > PAGE_DEADLINE => {
                panic!("chromedriver on port {port} did not start Chromium: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
