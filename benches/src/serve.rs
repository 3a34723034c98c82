//! The servers of the `grpc` and `notify` benches, each run as a child process of
//! the bench binary (hidden subcommands `serve-node`, `serve-peer` and
//! `serve-receiver`).
//!
//! Each prints `READY <addr>` on stdout once they accept connections and
//! shut down when their stdin closes, so a parent that dies takes them along.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::Result;
use dashmap::DashMap;
use huddle_proto::v1::{self, rooms_server::Rooms, rooms_server::RoomsServer};
use huddle_runtime::Config;
use huddle_runtime::server::Server;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::fixture;

/// Cancels `token` when stdin reaches end of file (the parent closed it or died).
fn cancel_on_stdin_eof(token: CancellationToken) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        token.cancel();
    });
}

fn ready(addr: std::net::SocketAddr) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {addr}")?;
    out.flush()?;
    Ok(())
}

/// A huddle node: `huddle_runtime::server::Server` with default config,
/// listeners on 127.0.0.1:0 and the given database and admin key.
pub fn serve_node(database: &str, admin_key: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let mut config = Config::default();
        config.server.listen = ([127, 0, 0, 1], 0).into();
        config.server.http = ([127, 0, 0, 1], 0).into();
        config.server.admin_key = Some(admin_key.to_string());
        config.database.url = database.to_string();
        let server = Server::bind(config).await?;
        ready(server.grpc_addr())?;
        let shutdown = CancellationToken::new();
        cancel_on_stdin_eof(shutdown.clone());
        server.run(shutdown).await?;
        Ok(())
    })
}

/// The peer: `huddle.v1.Rooms` whose GetRoom answers from a DashMap of
/// fixed rooms; every other method is UNIMPLEMENTED.
pub struct DashMapRooms {
    rooms: Arc<DashMap<String, v1::Room>>,
}

impl DashMapRooms {
    /// Serves [`fixture::peer_room`] `0..rooms`.
    pub fn new(rooms: usize) -> Self {
        let map = DashMap::new();
        for i in 0..rooms {
            map.insert(fixture::peer_room_id(i), fixture::peer_room(i));
        }
        DashMapRooms { rooms: Arc::new(map) }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>(what: &str) -> Reply<T> {
    Err(Status::unimplemented(format!("{what} is not part of the peer")))
}

#[tonic::async_trait]
impl Rooms for DashMapRooms {
    async fn create_room(&self, _: Request<v1::CreateRoomRequest>) -> Reply<v1::Room> {
        unimplemented("CreateRoom")
    }

    async fn get_room(&self, req: Request<v1::GetRoomRequest>) -> Reply<v1::Room> {
        let id = req.into_inner().id;
        match self.rooms.get(&id) {
            Some(room) => Ok(Response::new(room.clone())),
            None => Err(Status::not_found(format!("room `{id}` not found"))),
        }
    }

    async fn list_rooms(&self, _: Request<v1::ListRoomsRequest>) -> Reply<v1::ListRoomsResponse> {
        unimplemented("ListRooms")
    }

    async fn start_room(&self, _: Request<v1::StartRoomRequest>) -> Reply<v1::Room> {
        unimplemented("StartRoom")
    }

    async fn end_room(&self, _: Request<v1::EndRoomRequest>) -> Reply<v1::Room> {
        unimplemented("EndRoom")
    }

    async fn cancel_room(&self, _: Request<v1::CancelRoomRequest>) -> Reply<v1::Room> {
        unimplemented("CancelRoom")
    }

    async fn join_room(&self, _: Request<v1::JoinRoomRequest>) -> Reply<v1::Participant> {
        unimplemented("JoinRoom")
    }

    async fn leave_room(&self, _: Request<v1::LeaveRoomRequest>) -> Reply<v1::Participant> {
        unimplemented("LeaveRoom")
    }

    type WatchRoomStream = futures::stream::BoxStream<'static, Result<v1::RoomEvent, Status>>;

    async fn watch_room(&self, _: Request<v1::WatchRoomRequest>) -> Reply<Self::WatchRoomStream> {
        unimplemented("WatchRoom")
    }

    async fn stream_audio(&self, _: Request<tonic::Streaming<v1::AudioChunk>>) -> Reply<v1::StreamAudioResult> {
        unimplemented("StreamAudio")
    }

    async fn get_transcript(&self, _: Request<v1::GetTranscriptRequest>) -> Reply<v1::GetTranscriptResponse> {
        unimplemented("GetTranscript")
    }

    async fn list_recordings(&self, _: Request<v1::ListRecordingsRequest>) -> Reply<v1::ListRecordingsResponse> {
        unimplemented("ListRecordings")
    }
}

/// Serves [`DashMapRooms`] on 127.0.0.1:0 until stdin closes.
pub fn serve_peer(rooms: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let service = RoomsServer::new(DashMapRooms::new(rooms));
        ready(addr)?;
        let shutdown = CancellationToken::new();
        cancel_on_stdin_eof(shutdown.clone());
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.cancelled_owned(),
            )
            .await?;
        Ok(())
    })
}

/// The `notify` bench's webhook receiver: answers 204 to every `POST /hook` and
/// counts them; `GET /count` returns the count. Serves on 127.0.0.1:0 until stdin
/// closes. In its own process, as a real receiver is, so that its work competes
/// with the node's for the cores but not inside the node's scheduler.
pub fn serve_receiver() -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let count = Arc::new(AtomicU64::new(0));
        let (posted, read) = (count.clone(), count);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(move || {
                    posted.fetch_add(1, Ordering::Relaxed);
                    std::future::ready(axum::http::StatusCode::NO_CONTENT)
                }),
            )
            .route("/count", axum::routing::get(move || std::future::ready(read.load(Ordering::Relaxed).to_string())));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        ready(listener.local_addr()?)?;
        let shutdown = CancellationToken::new();
        cancel_on_stdin_eof(shutdown.clone());
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
        Ok(())
    })
}
