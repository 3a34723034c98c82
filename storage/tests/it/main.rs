//! Integration tests of huddle-storage.
//!
//! The conformance suite (`suite`) runs once per backend: against a fresh
//! SQLite file, and against the real Postgres server in a fresh schema
//! (`HUDDLE_TEST_POSTGRES_URL`, default [`common::DEFAULT_POSTGRES_URL`]).
//! The Postgres tests fail, with a message saying so, when the server cannot
//! be reached. `sqlite` and `postgres` hold backend-specific tests.

mod common;
mod fixture;
mod postgres;
mod sqlite;
mod suite;
mod urls;

/// Instantiates every suite test once per backend: `conformance::sqlite::X`
/// and `conformance::postgres::X`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod conformance {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::common::run(crate::common::Backend::Sqlite, |db| async move {
                            crate::suite::$name(&db).await
                        })
                        .await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::common::run(crate::common::Backend::Postgres, |db| async move {
                            crate::suite::$name(&db).await
                        })
                        .await;
                    }
                )*
            }
        }
    };
}

conformance!(
    backend_name,
    entity_crud,
    entity_pagination,
    invalid_page_tokens,
    department_uniqueness_and_update,
    api_keys,
    api_key_list_revoke_touch,
    room_create_and_get,
    room_filters,
    room_pagination,
    commit_room_change_and_conflict,
    concurrent_commits_one_wins,
    participants_upsert,
    events_ordering_and_limits,
    open_room_ids,
    room_routing_cursors,
    transcript_segments_round_trip_and_page,
    knowledge_documents_and_items,
    ingest_jobs_of_several_nodes,
    corrupt_values_are_errors,
    reopen_sees_committed_data,
    outbox_enqueue_claim_record,
    outbox_concurrent_claims_never_overlap,
    outbox_writes_many_rows_at_once,
    outbox_batches_are_all_or_nothing,
    webhook_endpoints_and_rotation,
    livekit_rooms_and_recordings,
    livekit_names_belong_to_one_entity,
);
