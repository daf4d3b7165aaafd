//! The HTTP API and /metrics of a real daemon process, over a real socket: every endpoint
//! checked against src/api/openapi.json, auth (required, refused, disabled, re-read on
//! SIGHUP), the audit trail, bad parameters, unknown targets, a second optimize → 409, the
//! history store down → 503 only where history is needed, no secret in any answer or log,
//! EXPLAIN on PostgreSQL, `promtool check metrics` and a real Prometheus scrape.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::ConnectOptions;

const BIN: &str = env!("CARGO_BIN_EXE_dbwarden");
const TOKEN: &str = "tok-9f3a1c77e2";
const SECRET: &str = "hunter2pw";

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

/// A port free now (bound, noted, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// The config: `[daemon]` with the history store (`None`: SQLite in the directory), the
/// listen port and `daemon_keys`, then `body`; `{dir}` stands for the daemon's directory.
fn config_text(
    dir: &Path,
    port: u16,
    history: Option<&str>,
    daemon_keys: &str,
    body: &str,
) -> String {
    let d = dir.display().to_string();
    let history = history.map_or_else(|| format!("sqlite://{d}/history.db"), str::to_string);
    format!(
        "[daemon]\nhistory = \"{history}\"\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"5s\"\n{}\n{}",
        daemon_keys.replace("{dir}", &d),
        body.replace("{dir}", &d)
    )
}

impl Daemon {
    /// Starts the daemon with `[daemon] listen` on a free port and waits for its API. The
    /// token file holds [`TOKEN`].
    async fn start(daemon_keys: &str, body: &str) -> Daemon {
        Daemon::start_on(None, daemon_keys, body).await
    }

    async fn start_on(history: Option<&str>, daemon_keys: &str, body: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n"))
            .unwrap_or_else(|e| panic!("token: {e}"));
        std::fs::write(
            dir.path().join("dbwarden.toml"),
            config_text(dir.path(), port, history, daemon_keys, body),
        )
        .unwrap_or_else(|e| panic!("config: {e}"));
        let log = std::fs::File::create(dir.path().join("daemon.log"))
            .unwrap_or_else(|e| panic!("log: {e}"));
        let child = Command::new(BIN)
            .args(["run", "-c", "dbwarden.toml", "--log-level", "debug"])
            .current_dir(dir.path())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let d = Daemon {
            child,
            dir,
            port,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.get("/healthz").await.0 != 200 {
            assert!(Instant::now() < deadline, "API never came up:\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    /// Rewrites the config (same store and port), for a SIGHUP.
    fn write_config(&self, daemon_keys: &str, body: &str) {
        std::fs::write(
            self.path().join("dbwarden.toml"),
            config_text(self.path(), self.port, None, daemon_keys, body),
        )
        .unwrap_or_else(|e| panic!("config: {e}"));
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.timeout(Duration::from_secs(20)).send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                (code, resp.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (code, text) = self.call(reqwest::Method::GET, path, None, None).await;
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (code, text) = self.call(reqwest::Method::POST, path, token, body).await;
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until `path` answers 200 and `ok` holds for its JSON.
    async fn wait_json(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = self.get(path).await;
            if code == 200 && ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}: {code} {v}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Opens (creating it) the SQLite database `file` in the daemon's directory and runs
    /// `sql` on it; the connection stays open for what follows (a held lock).
    async fn sqlite(&self, file: &str, sql: &str) -> sqlx::SqliteConnection {
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.path().join(file))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("open {file}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{file}: {sql}: {e}"));
        c
    }

    async fn history(&self) -> sqlx::SqlitePool {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.path().join("history.db"))
                    .busy_timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|e| panic!("open history: {e}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The OpenAPI document and a check of one answer against it.
struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json");
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("openapi.json: {e}"));
        Spec(serde_json::from_str(&text).unwrap_or_else(|e| panic!("openapi.json: {e}")))
    }

    /// Fails unless `code` is documented for (`path`, `method`) and `body` matches its
    /// JSON schema. `path` is the template (`/api/v1/targets/{name}/health`).
    fn check(&self, method: &str, path: &str, code: u16, body: &Value) {
        let op = &self.0["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in openapi.json");
        let resp = &op["responses"][code.to_string()];
        assert!(
            resp.is_object(),
            "{method} {path} answered {code}, which openapi.json does not list: {body}"
        );
        let Some(schema) = resp["content"]["application/json"]["schema"].as_object() else {
            return;
        };
        let mut root = Value::Object(schema.clone());
        root["components"] = self.0["components"].clone();
        let v = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("schema of {method} {path} {code}: {e}"));
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {code} does not match openapi.json:\n{}\n{body}",
            errors.join("\n")
        );
    }
}

/// A SQLite target, a PostgreSQL target with an inline password that nothing listens for,
/// a health job every second and a maintenance job.
fn fleet_config() -> String {
    let closed = free_port();
    format!(
        r#"
[[target]]
name = "demo"
url = "sqlite://{{dir}}/demo.db?mode=rwc"

[[target]]
name = "pgdown"
url = "postgres://dbw:{SECRET}@127.0.0.1:{closed}/x"

[[job]]
name = "health"
kind = "health"
schedule = "@every 1s"
targets = ["*"]

[[job]]
name = "nightly"
kind = "maintenance"
schedule = "0 3 * * *"
targets = ["demo"]
"#
    )
}

const TOKEN_KEYS: &str = "api_token_file = \"{dir}/token\"";

#[tokio::test]
async fn every_endpoint_answers_as_openapi_json_says_and_bad_input_is_named() {
    let spec = Spec::load();
    let d = Daemon::start(TOKEN_KEYS, &fleet_config()).await;
    d.wait_json("/api/v1/targets", "a round of both targets", |v| {
        v["targets"].as_array().is_some_and(|t| {
            t.iter()
                .filter(|t| {
                    (t["name"] == "demo" || t["name"] == "pgdown") && t["status"].is_string()
                })
                .count()
                == 2
        })
    })
    .await;
    let (code, served) = d.get("/api/v1/openapi.json").await;
    assert_eq!(
        (code, &served),
        (200, &spec.0),
        "served openapi.json is the file"
    );

    let gets: &[(&str, &str)] = &[
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
        ("/api/v1/targets", "/api/v1/targets"),
        (
            "/api/v1/targets/demo/health",
            "/api/v1/targets/{name}/health",
        ),
        (
            "/api/v1/targets/pgdown/health",
            "/api/v1/targets/{name}/health",
        ),
        (
            "/api/v1/targets/dbwarden/health",
            "/api/v1/targets/{name}/health",
        ),
        (
            "/api/v1/targets/demo/statistics?sort=table&order=asc&limit=5&offset=0",
            "/api/v1/targets/{name}/statistics",
        ),
        (
            "/api/v1/targets/demo/metrics",
            "/api/v1/targets/{name}/metrics",
        ),
        (
            "/api/v1/targets/demo/metrics?metric=connectivity&from=1h&step=1m",
            "/api/v1/targets/{name}/metrics",
        ),
        (
            "/api/v1/targets/demo/slow-queries?since=1h&by=mean&limit=5",
            "/api/v1/targets/{name}/slow-queries",
        ),
        (
            "/api/v1/targets/demo/maintenance?since=7d",
            "/api/v1/targets/{name}/maintenance",
        ),
        ("/api/v1/jobs", "/api/v1/jobs"),
        (
            "/api/v1/jobs/health/runs?limit=3",
            "/api/v1/jobs/{name}/runs",
        ),
        ("/api/v1/silences", "/api/v1/silences"),
    ];
    for (url, template) in gets {
        let (code, body) = d.get(url).await;
        assert_eq!(code, 200, "{url}: {body}");
        spec.check("get", template, code, &body);
    }
    let (_, health) = d.get("/api/v1/targets/pgdown/health").await;
    assert_eq!(health["status"], "CRITICAL", "{health}");
    // The rounds' latency reaches the trend once the history writer has written it.
    d.wait_json(
        "/api/v1/targets/demo/metrics?metric=connectivity&from=10m",
        "the rounds' latency in the trend",
        |t| {
            t["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["avg"].is_number()))
        },
    )
    .await;

    // Unknown targets, bad parameters: named.
    for t in [
        "health",
        "statistics",
        "metrics",
        "slow-queries",
        "maintenance",
    ] {
        let url = format!("/api/v1/targets/nosuch/{t}");
        let (code, body) = d.get(&url).await;
        assert_eq!(code, 404, "{url}: {body}");
        spec.check("get", &format!("/api/v1/targets/{{name}}/{t}"), code, &body);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nosuch"))
        );
    }
    for (url, field) in [
        ("/api/v1/targets/demo/statistics?sort=colour", "sort"),
        ("/api/v1/targets/demo/statistics?limit=0", "limit"),
        ("/api/v1/targets/demo/statistics?lmit=5", "lmit"),
        (
            "/api/v1/targets/demo/metrics?metric=connectivity&from=yesterday",
            "from",
        ),
        (
            "/api/v1/targets/demo/metrics?metric=connectivity&step=fast",
            "step",
        ),
        ("/api/v1/targets/demo/slow-queries?by=worst", "by"),
        ("/api/v1/targets/demo/maintenance?since=soon", "since"),
        ("/api/v1/jobs/health/runs?limit=x", "limit"),
    ] {
        let (code, body) = d.get(url).await;
        assert_eq!(code, 400, "{url}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("{field}:")), "{url}: {msg}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let (code, body) = d.get("/api/v1/jobs/nosuch/runs").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.get("/api/v1/runs/nosuch").await;
    assert_eq!(code, 404);
    spec.check("get", "/api/v1/runs/{id}", code, &body);

    // Mutating endpoints.
    let tok = Some(TOKEN);
    let (code, body) = d
        .post("/api/v1/targets/demo/optimize?dry_run=true", tok, None)
        .await;
    assert_eq!(code, 202, "{body}");
    spec.check("post", "/api/v1/targets/{name}/optimize", code, &body);
    let run_url = body["url"].as_str().unwrap_or_default().to_string();
    let run = d
        .wait_json(&run_url, "the dry run to finish", |v| {
            v["outcome"] != "running"
        })
        .await;
    spec.check("get", "/api/v1/runs/{id}", 200, &run);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert!(run["report"]["plan"].is_array(), "{run}");
    let (code, body) = d.post("/api/v1/targets/demo/optimize", tok, None).await;
    assert_eq!(code, 202, "{body}");
    let run_url = body["url"].as_str().unwrap_or_default().to_string();
    let run = d
        .wait_json(&run_url, "the run to finish", |v| v["outcome"] != "running")
        .await;
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(run["job"], "nightly", "the policy of the job covering it");
    assert!(
        run["report"]["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{run}"
    );
    let (code, body) = d.post("/api/v1/targets/nosuch/optimize", tok, None).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = d
        .post("/api/v1/targets/demo/optimize?dry_run=perhaps", tok, None)
        .await;
    assert_eq!(code, 400, "{body}");
    spec.check("post", "/api/v1/targets/{name}/optimize", code, &body);

    let plan = |q: &str| json!({ "query": q });
    let (code, body) = d
        .post(
            "/api/v1/targets/demo/query-plan",
            tok,
            Some(plan("SELECT 1")),
        )
        .await;
    assert_eq!(code, 501, "SQLite has no EXPLAIN here: {body}");
    spec.check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    let (code, body) = d
        .post(
            "/api/v1/targets/pgdown/query-plan",
            tok,
            Some(plan("SELECT 1")),
        )
        .await;
    assert!(matches!(code, 422 | 503), "{code} {body}");
    spec.check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    let (code, body) = d
        .post(
            "/api/v1/targets/pgdown/query-plan",
            tok,
            Some(json!({ "qurey": "SELECT 1" })),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("qurey")),
        "{body}"
    );

    // On its own connection: the server closes it after refusing the body unread.
    let huge = "x".repeat(300 * 1024);
    let (code, body) = match reqwest::Client::new()
        .post(d.url("/api/v1/targets/pgdown/query-plan"))
        .bearer_auth(TOKEN)
        .json(&plan(&huge))
        .send()
        .await
    {
        Ok(r) => (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or_default(),
        ),
        Err(e) => panic!("huge body: {e}"),
    };
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    spec.check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    let (code, body) = d
        .post(
            "/api/v1/silences",
            tok,
            Some(json!({ "target": "demo", "duration": "1h", "reason": "api test" })),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    spec.check("post", "/api/v1/silences", code, &body);
    let id = body["id"].as_i64().unwrap_or_default();
    let (_, list) = d.get("/api/v1/silences").await;
    assert!(
        list["silences"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["id"] == id))
    );
    for (bad, field) in [
        (
            json!({ "target": "nosuch", "duration": "1h", "reason": "r" }),
            "target",
        ),
        (
            json!({ "target": "demo", "duration": "40d", "reason": "r" }),
            "duration",
        ),
        (
            json!({ "target": "demo", "duration": "1h", "reason": " " }),
            "reason",
        ),
    ] {
        let (code, body) = d.post("/api/v1/silences", tok, Some(bad)).await;
        assert_eq!(code, 400, "{body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let (code, _) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/silences/{id}"),
            tok,
            None,
        )
        .await;
    assert_eq!(code, 204);
    let (code, text) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/silences/{id}"),
            tok,
            None,
        )
        .await;
    assert_eq!(code, 404, "{text}");

    let (code, metrics) = d.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(code, 200);
    for needle in [
        "dbwarden_check_status{check=\"connectivity\",target=\"demo\"} 0",
        "dbwarden_check_status{check=\"connectivity\",target=\"pgdown\"} 2",
        "dbwarden_job_runs_total{",
        "dbwarden_maintenance_actions_total{action=\"optimize\",outcome=\"done\",target=\"demo\"} 1",
        "dbwarden_history_store_up 1",
        "dbwarden_pool_connections{",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }

    // No secret anywhere: every answer so far, the metrics and the log.
    let mut all = String::new();
    for (url, _) in gets {
        all.push_str(&d.get(url).await.1.to_string());
    }
    all.push_str(&metrics);
    for text in [&all, &d.log()] {
        assert!(!text.contains(SECRET), "the target's password leaked");
        assert!(!text.contains(TOKEN), "the API token leaked");
    }
}

#[tokio::test]
async fn auth_is_required_refused_disabled_reread_on_sighup_and_audited() {
    let body = fleet_config();
    let d = Daemon::start(TOKEN_KEYS, &body).await;
    let silence = || Some(json!({ "target": "demo", "duration": "1m", "reason": "r" }));
    let (code, b) = d.post("/api/v1/silences", None, silence()).await;
    assert_eq!(
        (code, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (code, b) = d.post("/api/v1/silences", Some("wrong"), silence()).await;
    assert_eq!(
        (code, b["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (code, _) = d.post("/api/v1/silences", Some(TOKEN), silence()).await;
    assert_eq!(code, 201);

    // A new token in the file, SIGHUP: the old one is refused, the new one works.
    std::fs::write(d.path().join("token"), "second-token-77\n\n").unwrap_or_else(|e| panic!("{e}"));
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.post("/api/v1/silences", Some(TOKEN), silence()).await.0 != 403 {
        assert!(
            Instant::now() < deadline,
            "old token still accepted:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = d
        .post("/api/v1/silences", Some("second-token-77"), silence())
        .await;
    assert_eq!(code, 201, "trailing newlines trimmed");

    // No token configured: mutating endpoints are disabled, reads still answer.
    d.write_config("", &body);
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, b) = d
            .post(
                "/api/v1/targets/demo/optimize",
                Some("second-token-77"),
                None,
            )
            .await;
        if code == 403 && b["error"]["code"] == "disabled" {
            assert!(
                b["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("api_token_file"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "still enabled: {code} {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.get("/api/v1/targets").await.0, 200);

    // Every call above is in the audit table with its client and outcome.
    let pool = d.history().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows: Vec<(String, String, i64, String)> = loop {
        let rows =
            sqlx::query_as("SELECT client, path, status, outcome FROM api_audit ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        if rows.len() >= 6 {
            break rows;
        }
        assert!(Instant::now() < deadline, "audit rows: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let statuses: Vec<i64> = rows.iter().map(|r| r.2).collect();
    for s in [401, 403, 201] {
        assert!(statuses.contains(&s), "{rows:?}");
    }
    assert!(
        rows.iter().all(|r| r.0.starts_with("127.0.0.1:")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.1 == "/api/v1/targets/demo/optimize" && r.3 == "forbidden")
    );
    let log = d.log();
    assert!(log.contains("audit=true"), "audit lines in the log");
    assert!(
        !log.contains(TOKEN) && !log.contains("second-token-77"),
        "a token leaked into the log"
    );
}

#[tokio::test]
async fn a_second_optimize_while_one_runs_is_409_and_the_run_shows_progress() {
    // The target's database is locked by this test: the run waits (busy_timeout =
    // lock_timeout) until the lock goes, long enough to ask again.
    let d = Daemon::start(
        TOKEN_KEYS,
        r#"
[[target]]
name = "demo"
url = "sqlite://{dir}/demo.db?mode=rwc"

[[target]]
name = "other"
url = "sqlite://{dir}/other.db?mode=rwc"

[[job]]
name = "nightly"
kind = "maintenance"
schedule = "0 3 * * *"
lock_timeout = "60s"
targets = ["*"]
"#,
    )
    .await;
    let mut lock = d
        .sqlite(
            "demo.db",
            "CREATE TABLE IF NOT EXISTS t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1)",
        )
        .await;

    let (code, first) = d
        .post("/api/v1/targets/demo/optimize", Some(TOKEN), None)
        .await;
    assert_eq!(code, 202, "{first}");
    let id = first["run_id"].as_str().unwrap_or_default().to_string();
    let (code, second) = d
        .post("/api/v1/targets/demo/optimize", Some(TOKEN), None)
        .await;
    assert_eq!(code, 409, "{second}");
    assert_eq!(second["error"]["code"], "conflict");
    assert!(
        second["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&id))
    );
    let (code, body) = d
        .post("/api/v1/targets/other/optimize", Some(TOKEN), None)
        .await;
    assert_eq!(code, 202, "another SQLite file is another server: {body}");
    let (_, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["outcome"], "running", "{run}");
    assert!(run["progress"].is_object(), "{run}");
    let (_, targets) = d.get("/api/v1/targets").await;
    let demo = targets["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "demo").cloned())
        .unwrap_or_default();
    assert_eq!(demo["maintenance_running"], json!(id));

    sqlx::raw_sql("COMMIT")
        .execute(&mut lock)
        .await
        .unwrap_or_else(|e| panic!("unlock: {e}"));
    let run = d
        .wait_json(&format!("/api/v1/runs/{id}"), "the run to end", |v| {
            v["outcome"] != "running"
        })
        .await;
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(
        run["progress"]["steps_total"], run["progress"]["step"],
        "{run}"
    );
    assert!(
        run["progress"]["steps_total"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{run}"
    );
    let (code, body) = d
        .post("/api/v1/targets/demo/optimize", Some(TOKEN), None)
        .await;
    assert_eq!(code, 202, "free again: {body}");
}

/// A run the scheduler started shows its steps in `GET /api/v1/runs/{id}` as an
/// API-started one does.
#[tokio::test]
async fn a_scheduled_maintenance_run_shows_its_progress() {
    let d = Daemon::start(
        TOKEN_KEYS,
        r#"
[[target]]
name = "demo"
url = "sqlite://{dir}/demo.db?mode=rwc"

[[job]]
name = "often"
kind = "maintenance"
schedule = "@every 2s"
targets = ["demo"]
"#,
    )
    .await;
    // Maintenance never creates a watched database (a health round would have).
    d.sqlite("demo.db", "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        .await;
    let runs = d
        .wait_json("/api/v1/jobs/often/runs", "a finished scheduled run", |v| {
            v["runs"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["outcome"] == "ok"))
        })
        .await;
    let id = runs["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["outcome"] == "ok"))
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let (code, run) = d.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(code, 200, "{run}");
    Spec::load().check("get", "/api/v1/runs/{id}", code, &run);
    assert!(
        run["progress"]["steps_total"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{run}"
    );
    assert_eq!(
        run["progress"]["step"], run["progress"]["steps_total"],
        "{run}"
    );
    assert!(run["progress"]["action"].is_string(), "{run}");
}

#[tokio::test]
async fn with_the_history_store_down_only_history_answers_503() {
    // A PostgreSQL history store nothing listens for: the daemon runs degraded.
    let closed = free_port();
    let d = Daemon::start_on(
        Some(&format!("postgres://dbwarden@127.0.0.1:{closed}/history")),
        TOKEN_KEYS,
        r#"
[[target]]
name = "demo"
url = "sqlite://{dir}/demo.db?mode=rwc"

[[job]]
name = "health"
kind = "health"
schedule = "@every 1s"
targets = ["*"]
"#,
    )
    .await;
    d.wait_json("/api/v1/targets", "a round while the store is down", |v| {
        v["targets"][0]["status"] == "OK"
    })
    .await;
    let spec = Spec::load();
    for (url, template) in [
        ("/api/v1/targets", "/api/v1/targets"),
        (
            "/api/v1/targets/demo/health",
            "/api/v1/targets/{name}/health",
        ),
        ("/api/v1/jobs", "/api/v1/jobs"),
        ("/api/v1/jobs/health/runs", "/api/v1/jobs/{name}/runs"),
        ("/healthz", "/healthz"),
    ] {
        let (code, body) = d.get(url).await;
        assert_eq!(code, 200, "{url}: {body}");
        spec.check("get", template, code, &body);
    }
    let runs = d
        .wait_json("/api/v1/jobs/health/runs", "a finished run", |v| {
            v["runs"].as_array().is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(runs["source"], "live", "{runs}");
    for (url, template) in [
        (
            "/api/v1/targets/demo/metrics?metric=connectivity",
            "/api/v1/targets/{name}/metrics",
        ),
        (
            "/api/v1/targets/demo/metrics",
            "/api/v1/targets/{name}/metrics",
        ),
        (
            "/api/v1/targets/demo/slow-queries",
            "/api/v1/targets/{name}/slow-queries",
        ),
        (
            "/api/v1/targets/demo/maintenance",
            "/api/v1/targets/{name}/maintenance",
        ),
        (
            "/api/v1/targets/demo/statistics",
            "/api/v1/targets/{name}/statistics",
        ),
        ("/api/v1/silences", "/api/v1/silences"),
    ] {
        let (code, body) = d.get(url).await;
        assert_eq!(code, 503, "{url}: {body}");
        assert_eq!(body["error"]["code"], "store_unavailable");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !msg.contains(&closed.to_string()),
            "no connection details: {msg}"
        );
        spec.check("get", template, code, &body);
    }
    let (code, body) = d.get("/readyz").await;
    assert_eq!(
        (code, &body["store_reachable"]),
        (503, &json!(false)),
        "{body}"
    );
    let (_, metrics) = d.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert!(metrics.contains("dbwarden_history_store_up 0"), "{metrics}");
}

#[tokio::test]
async fn query_plan_on_postgresql_follows_the_explain_rules() {
    let Some(pg) = common::url_from_env("DBWARDEN_TEST_PG_URL") else {
        return;
    };
    let d = Daemon::start(
        TOKEN_KEYS,
        &format!(
            "[[target]]\nname = \"pg\"\nurl = \"{pg}\"\n\n[[target]]\nname = \"my\"\nurl = \"mysql://root@127.0.0.1:1/x\"\n"
        ),
    )
    .await;
    let spec = Spec::load();
    let ask = |q: &str, analyze: bool| json!({ "query": q, "analyze": analyze });
    let (code, body) = d
        .post(
            "/api/v1/targets/pg/query-plan",
            Some(TOKEN),
            Some(ask("SELECT 1 AS one", false)),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    spec.check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    assert!(body["plan"][0]["Plan"]["Node Type"].is_string(), "{body}");
    let (code, body) = d
        .post(
            "/api/v1/targets/pg/query-plan",
            Some(TOKEN),
            Some(json!({ "query": "SELECT 1", "format": "text" })),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["plan"][0]
            .as_str()
            .is_some_and(|l| l.contains("Result")),
        "{body}"
    );
    let (code, body) = d
        .post(
            "/api/v1/targets/pg/query-plan",
            Some(TOKEN),
            Some(ask("DELETE FROM pg_class", false)),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("query:")),
        "{body}"
    );
    let (code, body) = d
        .post(
            "/api/v1/targets/pg/query-plan",
            Some(TOKEN),
            Some(ask("SELECT 1", true)),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("analyze_not_allowed"))
    );
    let (code, body) = d
        .post(
            "/api/v1/targets/pg/query-plan",
            Some(TOKEN),
            Some(ask("SELECT * FROM no_such_table_dbw", false)),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    spec.check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    let (code, body) = d
        .post(
            "/api/v1/targets/my/query-plan",
            Some(TOKEN),
            Some(ask("SELECT 1", false)),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (501, Some("not_implemented"))
    );
}

/// A request that takes longer than `[daemon] request_timeout` is answered `503` in the
/// error shape once the timeout passes (not after the 10 s connect timeout of the stalled
/// server it waits on), audited as a timeout, and the daemon goes on serving.
#[tokio::test]
async fn a_request_over_request_timeout_is_503_timeout_and_the_daemon_goes_on() {
    let Some(pg) = common::url_from_env("DBWARDEN_TEST_PG_URL") else {
        return;
    };
    let (proxy, via) = common::proxy::Proxy::for_url(&pg).await;
    let d = Daemon::start(
        &format!("{TOKEN_KEYS}\nrequest_timeout = \"1s\""),
        &format!(
            "[[target]]\nname = \"pg\"\nurl = \"{via}\"\npool = {{ connect_timeout = \"10s\", acquire_timeout = \"10s\" }}\n"
        ),
    )
    .await;
    // New connections to the server now hang: EXPLAIN waits on its connection.
    proxy.pause().await;
    let plan = Some(json!({ "query": "SELECT 1" }));
    let asked = Instant::now();
    let (code, body) = d
        .post("/api/v1/targets/pg/query-plan", Some(TOKEN), plan.clone())
        .await;
    let took = asked.elapsed();
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (503, Some("timeout")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("request_timeout")),
        "{body}"
    );
    Spec::load().check("post", "/api/v1/targets/{name}/query-plan", code, &body);
    assert!(
        took < Duration::from_secs(9),
        "answered after {took:?}: by the connect timeout, not the request timeout"
    );
    // The daemon still serves, and the same call works once the server answers again.
    assert_eq!(d.get("/healthz").await.0, 200);
    proxy.resume().await;
    let (code, body) = d
        .post("/api/v1/targets/pg/query-plan", Some(TOKEN), plan)
        .await;
    assert_eq!(code, 200, "{body}");
    // The timed-out call is in the audit trail as what the client got.
    let pool = d.history().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT status, outcome FROM api_audit ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        if rows.len() >= 2 {
            assert_eq!(
                rows,
                vec![(503, "timeout".to_string()), (200, "ok".to_string())]
            );
            break;
        }
        assert!(Instant::now() < deadline, "audit rows: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a program is on PATH; skips (or fails under DBWARDEN_REQUIRE_SERVICES=1) if not.
fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        common::skip(&format!(
            "{program} not installed (Debian package prometheus; .ci/run installs it)"
        ));
    }
    ok
}

#[tokio::test]
async fn promtool_accepts_the_live_metrics_and_a_real_prometheus_scrapes_them() {
    if !have("promtool") || !have("prometheus") {
        return;
    }
    let d = Daemon::start(TOKEN_KEYS, &fleet_config()).await;
    d.wait_json("/api/v1/targets", "a round", |v| {
        v["targets"][0]["status"].is_string()
    })
    .await;
    let (_, r) = d
        .post("/api/v1/targets/demo/optimize", Some(TOKEN), None)
        .await;
    let run = format!("/api/v1/runs/{}", r["run_id"].as_str().unwrap_or_default());
    d.wait_json(&run, "maintenance", |v| v["outcome"] == "ok")
        .await;
    let (code, text) = d.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(code, 200);
    // The history writer timed its batches (the rounds and the run above were written).
    assert!(
        text.contains("# TYPE dbwarden_history_write_seconds histogram"),
        "{text}"
    );
    let writes = text
        .lines()
        .find_map(|l| l.strip_prefix("dbwarden_history_write_seconds_count "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(writes.is_some_and(|n| n > 0.0), "write count {writes:?}");
    // Callers waiting for a pool connection (tests/engine_postgres.rs makes one wait).
    assert!(
        text.lines()
            .any(|l| l.starts_with("dbwarden_pool_connections{")
                && l.contains("state=\"waiting\"")
                && l.contains("target=\"demo\"")),
        "{text}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("promtool stdin: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes the daemon every second; PromQL answers from it.
    let prom_port = free_port();
    let data = d.path().join("prom");
    std::fs::write(
        d.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dbwarden\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            d.port
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let prom_log =
        std::fs::File::create(d.path().join("prometheus.log")).unwrap_or_else(|e| panic!("{e}"));
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            d.path().join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(prom_log)
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus: {e}"));
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(prom);
    let query = "max(dbwarden_check_status{target=\"pgdown\",check=\"connectivity\"}) + on() group_left sum(dbwarden_maintenance_actions_total{target=\"demo\"})";
    let base = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    let url = |q: &str| {
        url::Url::parse_with_params(&base, &[("query", q)])
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = loop {
        let got = d.http.get(url(query)).send().await.ok();
        let v: Value = match got {
            Some(r) => r.json().await.unwrap_or_default(),
            None => Value::Null,
        };
        if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
            break value.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered: {v}\n{}",
            std::fs::read_to_string(d.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // CRITICAL (2) plus one maintenance action.
    assert_eq!(answer, "3", "PromQL over the scraped series");
    let up: Value = d
        .http
        .get(url("up{job=\"dbwarden\"}"))
        .send()
        .await
        .ok()
        .map(|r| r.json())
        .unwrap_or_else(|| panic!("query up"))
        .await
        .unwrap_or_default();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
}
