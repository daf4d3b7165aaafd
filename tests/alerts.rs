//! Alerts against real things: the outbox and silences in both history-store dialects
//! (claims across agents on the real PostgreSQL), delivery to a real HTTP receiver on
//! 127.0.0.1:0, and the daemon end to end.

mod common;

use chrono::{Duration as CDuration, Utc};
use common::pg::{PgDb, pg_url};
use dbwarden::config::SecretUrl;
use dbwarden::store::{OutboxRow, Store};

fn row(key: &str, channel: &str) -> OutboxRow {
    let now = Utc::now();
    OutboxRow {
        key: key.into(),
        channel: channel.into(),
        agent: "agent1".into(),
        target: "db".into(),
        event: "firing".into(),
        created_at: now,
        due_at: now,
        payload: "{}".into(),
        attempts: 0,
        next_at: now,
    }
}

/// Insert (idempotent), claims exclusive between claimers until the lease ends, a
/// predecessor's claims released, delivered / failed / cancelled, the undelivered count,
/// and silences.
async fn exercise_outbox(store: &Store) {
    let now = Utc::now();
    let lease = now + CDuration::seconds(60);
    let chans = vec!["hook".to_string(), "mail".to_string()];
    store
        .outbox_insert(&[row("k1", "hook"), row("k1", "mail")], "agent1:1", lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Written again after an outage: no duplicate, no error.
    store
        .outbox_insert(&[row("k1", "hook")], "agent1:1", lease)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_insert(
            &[row("k2", "hook")],
            "agent1:1",
            now - CDuration::seconds(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let claim = |who: &'static str| {
        let chans = chans.clone();
        async move {
            let mut got: Vec<String> = store
                .outbox_claim(
                    who,
                    &chans,
                    Utc::now(),
                    Utc::now() + CDuration::seconds(60),
                    100,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|r| format!("{}/{}", r.key, r.channel))
                .collect();
            got.sort();
            got
        }
    };
    // k1 is held by its writer; k2's lease expired: another agent may take it, once.
    assert_eq!(claim("agent2:1").await, vec!["k2/hook"]);
    assert!(claim("agent3:1").await.is_empty());
    // A restarted agent1 takes back what its killed predecessor held.
    assert_eq!(
        store
            .outbox_release_agent("agent1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    assert_eq!(claim("agent1:2").await, vec!["k1/hook", "k1/mail"]);
    assert_eq!(
        store
            .outbox_renew("agent1:2", Utc::now() + CDuration::seconds(60))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    store
        .outbox_failed("k1", "mail", 1, "SMTP 451", Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_delivered("k1", "hook", 1, Utc::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let u = store
        .outbox_undelivered()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counts: Vec<(String, i64)> = u.iter().map(|u| (u.channel.clone(), u.count)).collect();
    assert_eq!(counts, vec![("hook".into(), 1), ("mail".into(), 1)]);
    assert_eq!(u[1].last_error.as_deref(), Some("SMTP 451"));
    store
        .outbox_cancel("k2")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .outbox_cancel("k1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        store
            .outbox_undelivered()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );

    // Silences: active until they end or are removed.
    let id = store
        .silence_add("db", now + CDuration::hours(2), "upgrade", "tester")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id2 = store
        .silence_add("db2", now + CDuration::hours(1), "x", "tester")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let active = store
        .silences_active(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        active.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![id2, id]
    );
    assert_eq!(active[1].reason, "upgrade");
    // Past its end it is no longer active.
    let later = store
        .silences_active(now + CDuration::minutes(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(later.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
    assert!(
        store
            .silence_remove(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !store
            .silence_remove(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let active = store
        .silences_active(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(active.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id2]);
}

#[tokio::test]
async fn sqlite_outbox_and_silences() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = SecretUrl::new(format!("sqlite://{}/h.db", dir.path().display()));
    let store = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise_outbox(&store).await;
}

#[tokio::test]
async fn postgres_outbox_and_silences() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let store = Store::open(&SecretUrl::new(db.url.clone()), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise_outbox(&store).await;
    store.close(std::time::Duration::from_secs(5)).await;
    db.drop_db().await;
}

/// Two agents claiming the same rows at the same time on one PostgreSQL store never
/// both get a row.
#[tokio::test]
async fn postgres_concurrent_claims_never_overlap() {
    let Some(admin) = pg_url() else { return };
    let db = PgDb::create(&admin).await;
    let url = SecretUrl::new(db.url.clone());
    let a = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = Store::open(&url, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<OutboxRow> = (0..400).map(|i| row(&format!("k{i}"), "hook")).collect();
    a.outbox_insert(&rows, "nobody:0", Utc::now() - CDuration::seconds(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chans = vec!["hook".to_string()];
    let take = |s: Store, who: &'static str| {
        let chans = chans.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s
                    .outbox_claim(
                        who,
                        &chans,
                        Utc::now(),
                        Utc::now() + CDuration::seconds(60),
                        7,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|r| r.key));
            }
        })
    };
    let (ga, gb) = (take(a.clone(), "a:1"), take(b.clone(), "b:1"));
    let ga = ga.await.unwrap_or_else(|e| panic!("{e}"));
    let gb = gb.await.unwrap_or_else(|e| panic!("{e}"));
    let mut all: Vec<&String> = ga.iter().chain(gb.iter()).collect();
    assert_eq!(all.len(), 400, "a took {}, b took {}", ga.len(), gb.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "a row was claimed twice");
    a.close(std::time::Duration::from_secs(5)).await;
    b.close(std::time::Duration::from_secs(5)).await;
    db.drop_db().await;
}
