//! Choosing a backend by URL.

use huddle_storage::postgres::PostgresStore;
use huddle_storage::sqlite::SqliteStore;
use huddle_storage::{Result, StorageError};

fn assert_unsupported<T>(result: Result<T>, url: &str) {
    match result {
        Ok(_) => panic!("`{url}` was accepted"),
        Err(StorageError::UnsupportedUrl(got)) => {
            assert_eq!(got, url);
            let message = StorageError::UnsupportedUrl(got).to_string();
            assert!(message.contains("sqlite://PATH"), "{message}");
        }
        Err(e) => panic!("`{url}`: expected UnsupportedUrl, got {e:?}"),
    }
}

#[tokio::test]
async fn unknown_schemes_are_unsupported() {
    for url in ["mysql://x", "", "huddle.db", "redis://127.0.0.1"] {
        assert_unsupported(huddle_storage::open(url).await, url);
    }
}

#[tokio::test]
async fn each_backend_refuses_the_others_urls() {
    assert_unsupported(SqliteStore::open("postgres://x").await, "postgres://x");
    assert_unsupported(PostgresStore::open("sqlite://x.db").await, "sqlite://x.db");
    assert_unsupported(PostgresStore::open_in_schema("mysql://x", "s").await, "mysql://x");
}

#[tokio::test]
async fn refused_urls_are_shown_without_credentials() {
    let url = "mysql://root:hunter2@db/x?sslkey=k";
    let Err(e) = huddle_storage::open(url).await else { panic!("`{url}` was accepted") };
    let message = e.to_string();
    assert!(message.contains("mysql://<redacted>@db/x?<redacted>"), "{message}");
    assert!(!message.contains("hunter2") && !message.contains("sslkey"), "{message}");
}
