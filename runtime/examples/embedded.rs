//! Embedding huddle in another Rust service: start the runtime in-process on
//! a SQLite file, run a short meeting, and print what a watcher saw. No gRPC.
//!
//! ```text
//! cargo run -p huddle-runtime --example embedded
//! ```

use futures::StreamExt;
use huddle_core::{NewEntity, NewParticipant, NewRoom, ParticipantKind};
use huddle_runtime::{Runtime, WatchItem};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("embedded.db").display());
    let rt = Runtime::builder().database_url(url).build().await?;
    let api = rt.admin();

    let acme = api
        .create_entity(NewEntity {
            name: "Acme".into(),
            default_instructions: "Be brief.".into(),
            ..Default::default()
        })
        .await?;
    let room =
        api.create_room(NewRoom { entity_id: acme.id.clone(), title: "Standup".into(), ..Default::default() }).await?;
    let id = room.view.room.id.clone();

    let mut watch = api.watch_room(&id).await?;
    let printer = tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            match item {
                Ok(WatchItem::Snapshot(s)) => println!("snapshot: {} ({})", s.view.room.title, s.view.room.status),
                Ok(WatchItem::Event(e)) => println!("event #{}: {}", e.seq, e.data),
                Err(e) => eprintln!("watch error: {e}"),
            }
        }
    });

    api.start_room(&id).await?;
    let person = |name: &str, kind| NewParticipant {
        kind,
        display_name: name.into(),
        email: None,
        phone: None,
        identity: String::new(),
    };
    let ada = api.join_room(&id, person("Ada", ParticipantKind::Human)).await?;
    api.join_room(&id, person("huddle", ParticipantKind::Agent)).await?;
    api.leave_room(&id, &ada.id).await?;
    let ended = api.end_room(&id).await?;
    printer.await?;
    println!(
        "room {} ended as {} with {} participants",
        ended.view.room.id,
        ended.view.room.status,
        ended.view.participants.len()
    );
    rt.shutdown().await;
    Ok(())
}
