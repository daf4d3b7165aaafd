//! A small W3C WebDriver client (over reqwest, already a dependency) and a chromedriver
//! process running headless Chromium, for the dashboard's real-browser test. Only the
//! commands the test uses: navigate, run a script, find/click/type, accept a dialog,
//! resize, screenshot.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The Chromium and chromedriver binaries (Debian `chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Why the browser test cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    for (p, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !std::path::Path::new(p).exists() {
            return Some(format!(
                "{p} not found (Debian package {pkg}; .ci/run installs it)"
            ));
        }
    }
    None
}

/// chromedriver on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

/// One browser session.
pub struct Session {
    http: reqwest::Client,
    url: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    pub async fn start() -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == json!(true)
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not become ready on port {port}");
    }

    /// A headless Chromium session with a laptop-sized window.
    pub async fn session(&self) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1366,900",
                         "--no-first-run", "--disable-extensions"]
            }
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap_or_else(|e| panic!("new session: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("new session: {e}"));
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Session {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Session {
    /// A command's value, or the WebDriver error it answered with.
    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    /// Accepts the page's `confirm`/`alert` dialog as a user would (OK), waiting up to 5 s
    /// for it to open; returns its text.
    pub async fn accept_dialog(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self
                .try_cmd(reqwest::Method::GET, "/alert/text", None)
                .await
            {
                Ok(text) => {
                    self.cmd(reqwest::Method::POST, "/alert/accept", Some(json!({})))
                        .await;
                    return text.as_str().unwrap_or_default().to_string();
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("no dialog opened within 5 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Clicks an element as a user would: scrolled to the middle of the window first (a
    /// sticky header would take a click at the top edge).
    pub async fn click(&self, css: &str) {
        // The page's 30 s refresh (and a section re-rendered after an action) replaces
        // elements: one found just before may be stale by the click. Find it again then,
        // as a user's second look would.
        let mut last = Value::Null;
        for _ in 0..5 {
            let id = self.find(css).await;
            let el = json!({ ELEMENT: id });
            let clicked = match self
                .try_cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({
                        "script": "arguments[0].scrollIntoView({ block: 'center' });",
                        "args": [el],
                    })),
                )
                .await
            {
                Ok(_) => {
                    self.try_cmd(
                        reqwest::Method::POST,
                        &format!("/element/{id}/click"),
                        Some(json!({})),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match clicked {
                Ok(_) => return,
                Err(e) if e["error"] == "stale element reference" => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("webdriver click {css}: {e}"),
            }
        }
        panic!("webdriver click {css}: still stale after 5 tries: {last}");
    }

    /// Types into an element as a user would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64_decode(v.as_str().unwrap_or_else(|| panic!("screenshot: {v}")))
    }

    /// Polls `script` until it returns true; fails after `secs` with `what` and the last value.
    pub async fn wait_js(&self, secs: u64, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.js(script, vec![]).await;
            if v == json!(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("gave up after {secs}s waiting until {what} (last: {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The loaded page's first contentful paint (ms, waited for) and the bytes of the
    /// document and every resource it loaded (decoded), with the resources' URLs.
    pub async fn page_metrics(&self) -> Value {
        self.wait_js(
            10,
            "the first contentful paint is recorded",
            "return performance.getEntriesByName('first-contentful-paint').length > 0;",
        )
        .await;
        self.js(
            "const nav = performance.getEntriesByType('navigation')[0];
             const res = performance.getEntriesByType('resource');
             return { fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
                      bytes: nav.decodedBodySize + res.reduce((a, r) => a + r.decodedBodySize, 0),
                      resources: res.map(r => r.name) };",
            vec![],
        )
        .await
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// Standard base64 (screenshots), without a dependency for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let take = data.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
