//! Postgres-only behaviour: schemas, URL dispatch, an unreachable server.

use huddle_storage::postgres::PostgresStore;
use huddle_storage::{EntityStore, PageRequest, StorageError};

use crate::common::{drop_schema, entity, open_postgres, postgres_url, random_schema};

#[tokio::test]
async fn open_by_url_uses_the_schema_in_the_url() {
    let url = postgres_url();
    let schema = random_schema();
    let outcome = tokio::spawn({
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let first = open_postgres(&url, &schema).await;
            let acme = entity(&first, "Acme").await;

            let sep = if url.contains('?') { '&' } else { '?' };
            let schema_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
            let store = match huddle_storage::open(&schema_url).await {
                Ok(store) => store,
                Err(e) => panic!("open {schema_url}: {e}"),
            };
            assert_eq!(store.backend(), "postgres");
            assert_eq!(store.get_entity(&acme.id).await.unwrap(), acme);
        }
    })
    .await;
    drop_schema(&url, &schema).await;
    outcome.unwrap();
}

#[tokio::test]
async fn schemas_are_isolated() {
    let url = postgres_url();
    // The second name needs quoting: mixed case and a space.
    let (s1, s2) = (random_schema(), format!("Odd Schema {}", random_schema()));
    let outcome = tokio::spawn({
        let (url, s1, s2) = (url.clone(), s1.clone(), s2.clone());
        async move {
            let one = open_postgres(&url, &s1).await;
            let two = open_postgres(&url, &s2).await;
            let acme = entity(&one, "Acme").await;
            assert_eq!(one.list_entities(PageRequest::default()).await.unwrap().items, vec![acme.clone()]);
            assert!(two.list_entities(PageRequest::default()).await.unwrap().items.is_empty());
            assert!(matches!(two.get_entity(&acme.id).await, Err(StorageError::NotFound { what: "entity", .. })));
        }
    })
    .await;
    drop_schema(&url, &s1).await;
    drop_schema(&url, &s2).await;
    outcome.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    // Port 1 on the loopback address: nothing listens there.
    match PostgresStore::open("postgres://postgres@127.0.0.1:1/test").await {
        Ok(_) => panic!("opened a store on a closed port"),
        Err(e) => assert!(e.is_unavailable(), "{e:?} should count as unavailable"),
    }
}
