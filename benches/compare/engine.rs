//! The floor that `ractor_cluster` itself sets under a remote call: two processes of
//! this bench binary, each with a node server and nothing of multiproc, one calling
//! an echo actor of the other through their session. A remote actor call of
//! multiproc crosses such a session once each way, and a link to the actor's
//! process besides; so no remote call can be faster than this.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServer, NodeServerMessage};

use crate::Res;
use crate::raw::RawChild;

const COOKIE: &str = "bench-engine";
const GROUP: &str = "bench-engine-echo";

/// A call carrying bytes, answered with the same bytes.
pub(crate) struct EchoMsg(Vec<u8>, RpcReplyPort<Vec<u8>>);

impl ractor::Message for EchoMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(SerializedMessage::Call {
            variant: "echo".to_string(),
            args: self.0,
            reply: self.1,
            metadata: None,
        })
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Call { args, reply, .. } => Ok(EchoMsg(args, reply)),
            _ => Err(BoxedDowncastErr),
        }
    }
}

struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<EchoMsg>, (): ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        EchoMsg(bytes, reply): EchoMsg,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(bytes);
        Ok(())
    }
}

/// A TCP stream handed to a node server, with `TCP_NODELAY`, as multiproc's own.
struct Plain(tokio::net::TcpStream);

impl ClusterBidiStream for Plain {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        let (read, write) = self.0.into_split();
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        self.0.peer_addr().ok().map(|a| a.to_string())
    }

    fn local_label(&self) -> Option<String> {
        self.0.local_addr().ok().map(|a| a.to_string())
    }
}

async fn server(name: &str) -> Res<ActorRef<NodeServerMessage>> {
    let server = NodeServer::new(
        0,
        COOKIE.to_string(),
        name.to_string(),
        "localhost".to_string(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
    let (server, _) = Actor::spawn(None, server, ()).await?;
    Ok(server)
}

/// The raw child's side (`raw-engine-echo`): a node server and an echo actor; its
/// listener's port goes up the socket on stdin, and it serves until that closes.
pub(crate) fn serve(mut up: std::os::unix::net::UnixStream) -> Res {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = server("bench-echo").await?;
        Actor::spawn(None, Echo, ()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        up.write_all(&listener.local_addr()?.port().to_be_bytes())?;
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        server.cast(NodeServerMessage::ConnectionOpenedExternal {
            stream: Box::new(Plain(stream)),
            is_server: true,
        })?;
        // Served until the bench closes the socket.
        tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            let _ = up.read_to_end(&mut rest);
        })
        .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// This end: a node server of its own, a session with the child's, and the child's
/// echo actor as the engine presents it here.
pub(crate) struct EngineEcho {
    child: RawChild,
    rt: tokio::runtime::Runtime,
    echo: ActorRef<EchoMsg>,
}

impl EngineEcho {
    pub(crate) fn start() -> Res<EngineEcho> {
        let mut child = RawChild::start("raw-engine-echo", &[])?;
        let mut port = [0u8; 2];
        child.sock.read_exact(&mut port)?;
        let port = u16::from_be_bytes(port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let echo = rt.block_on(async move {
            let server = server("bench-caller").await?;
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            ractor_cluster::client_connect_external(&server, Box::new(Plain(stream)))
                .await
                .map_err(|e| format!("engine connect: {e}"))?;
            // The session exchanges process groups once authenticated.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(cell) = ractor::pg::get_members(&GROUP.to_string())
                    .into_iter()
                    .find(|c| !c.get_id().is_local())
                {
                    return Ok::<_, Box<dyn std::error::Error>>(ActorRef::<EchoMsg>::from(cell));
                }
                if Instant::now() > deadline {
                    return Err("the engine's echo actor did not appear".into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })?;
        Ok(EngineEcho { child, rt, echo })
    }

    /// The pids of the two processes a call crosses.
    pub(crate) fn pids(&self) -> [u32; 2] {
        [std::process::id(), self.child.child.id()]
    }

    /// µs per call over `n`, each carrying 8 bytes there and back.
    pub(crate) fn batch(&mut self, n: usize) -> Res<f64> {
        let echo = self.echo.clone();
        self.rt.block_on(async move {
            let t0 = Instant::now();
            for i in 0..n as u64 {
                let sent = i.to_le_bytes().to_vec();
                match echo.call(|port| EchoMsg(sent, port), None).await? {
                    CallResult::Success(back) if back == i.to_le_bytes() => {}
                    other => return Err(format!("engine echo: {other:?}").into()),
                }
            }
            Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
        })
    }

    pub(crate) fn finish(self) -> Res {
        drop(self.rt);
        self.child.finish()
    }
}
