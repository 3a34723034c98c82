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
