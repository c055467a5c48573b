//! The ka.sock server (spec §4.3–4.5).
//!
//! * Socket: the directory is created root-owned with mode 0750 when missing
//!   ([`ensure_private_dir`], shared with the USB state file and the gRPC socket, so whichever
//!   part of the daemon creates `/run/kubearmor` first, it is 0750), a stale socket is removed
//!   (a live one, i.e. another daemon, is an error, and a non-socket file is never deleted), and
//!   the socket is chmod-ed to `socket_mode` (0600 by default: only root, the runtime; upstream's
//!   0777 lets any local user in).
//! * Messages: a byte stream split by [`Decoder`](crate::protocol::Decoder), capped at
//!   [`MAX_MESSAGE_BYTES`](crate::protocol::MAX_MESSAGE_BYTES); exactly one reply (`ok` / `err`)
//!   per message. Malformed JSON gets `err` and closes the connection (the stream cannot be
//!   resynchronised); a well-formed but invalid message gets `err` and the connection carries
//!   on. Neither changes the registry.
//! * Ordering: unlike upstream (which answers `ok` and then processes), a message is applied to
//!   the registry, and the optional [`ChangeHandler`] has run (e.g. the daemon installed the
//!   container's policies), *before* the hook gets `ok`. The runtime waits for the hook, so a
//!   container is known before its first instruction.
//! * Proof: every message is checked by [`verify::check`](crate::verify::check) (SO_PEERCRED
//!   uid `trusted_uid`, not from inside a container, a create names a live process in the
//!   claimed cgroup, a delete only once the container stopped); a refused message gets `err`,
//!   changes nothing and goes to [`ChangeHandler::on_refused`] (the daemon raises an alert).
//! * Readiness gate: see [`Readiness`]. Messages with `detached: true` are always processed; a
//!   detached session opens the gate when its connection closes.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::protocol::{Decoder, HookRequest, Reply, MAX_MESSAGE_BYTES};
use crate::registry::{Change, Registry, Source};
use crate::verify::{self, Peer, Refusal};

/// Upstream's socket path.
pub const DEFAULT_SOCKET: &str = "/var/run/kubearmor/ka.sock";

/// When non-detached hook messages are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Accept from the start. This is right whenever the daemon learnt the containers that
    /// existed before it by itself (the runc [`rescan`](crate::rescan), the
    /// [`hookpath`](crate::hookpath) file) before calling [`HookServer::serve`]: the gate exists
    /// upstream only to let the detached replay land first, and that replay is what the rescan
    /// replaces. It is the default, and the only sane choice in systemd mode, where nothing
    /// would ever send a detached message and upstream's gate stays shut forever (§4.5).
    Open,
    /// Upstream's gate: answer `err` to non-detached messages (the hook retries every 50 ms)
    /// until a detached session closes, but open anyway after `max_wait` so a missing replay
    /// cannot block every container start (upstream's detached process gives up after one
    /// minute).
    AwaitDetached { max_wait: Duration },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub socket_path: PathBuf,
    /// Mode of the socket file (0600; upstream non-k8s: 0777).
    pub socket_mode: u32,
    /// Mode of the socket directory when we create it (0750).
    pub dir_mode: u32,
    pub readiness: Readiness,
    /// The only peer uid (SO_PEERCRED) allowed to speak for a runtime: root.
    pub trusted_uid: u32,
    pub max_message_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// How long in-flight connections may finish after shutdown is requested.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket_path: PathBuf::from(DEFAULT_SOCKET),
            socket_mode: 0o600,
            dir_mode: 0o750,
            readiness: Readiness::Open,
            trusted_uid: 0,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl ServerConfig {
    pub fn with_socket(path: impl Into<PathBuf>) -> Self {
        ServerConfig {
            socket_path: path.into(),
            ..ServerConfig::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0} is in use by a running process (another kubearmor daemon?)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Boxed future returned by [`ChangeHandler::on_change`].
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs after a hook message changed the registry and before the hook gets its reply: the
/// place to install a new container's policies so they are in force before it starts.
pub trait ChangeHandler: Send + Sync + 'static {
    fn on_change<'a>(&'a self, change: &'a Change) -> HandlerFuture<'a>;

    /// A message refused as unproven (a forged create or delete); it changed nothing.
    fn on_refused<'a>(&'a self, refusal: &'a Refusal) -> HandlerFuture<'a> {
        let _ = refusal;
        Box::pin(async {})
    }
}

/// The readiness gate, shared with the connection tasks.
#[derive(Debug, Default)]
pub struct ReadyGate {
    ready: AtomicBool,
    notify: Notify,
}

impl ReadyGate {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn open(&self) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!("ka.sock readiness gate open");
        }
        self.notify.notify_waiters();
    }

    /// Wait until the gate is open.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_ready() {
                return;
            }
            notified.await;
        }
    }
}

/// A bound ka.sock listener, not yet serving.
pub struct HookServer {
    listener: std::os::unix::net::UnixListener,
    socket_ino: u64,
    config: ServerConfig,
    registry: Arc<Registry>,
    handler: Option<Arc<dyn ChangeHandler>>,
    gate: Arc<ReadyGate>,
}

impl std::fmt::Debug for HookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookServer")
            .field("socket", &self.config.socket_path)
            .field("ready", &self.gate.is_ready())
            .finish()
    }
}

impl HookServer {
    /// Create the directory, clear a stale socket, bind and chmod. Hooks that connect between
    /// `bind` and [`serve`](Self::serve) wait in the listen backlog, so the daemon can bind,
    /// then rescan, then serve without losing a container started in between.
    pub fn bind(config: ServerConfig, registry: Arc<Registry>) -> Result<Self, ServerError> {
        let path = config.socket_path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_private_dir(dir, config.dir_mode)?;
        }
        remove_stale_socket(&path)?;
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(io_err(format!("bind {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.socket_mode))
            .map_err(io_err(path.display().to_string()))?;
        let socket_ino = std::fs::metadata(&path)
            .map(|m| m.ino())
            .map_err(io_err(path.display().to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err(path.display().to_string()))?;
        let gate = Arc::new(ReadyGate::default());
        if config.readiness == Readiness::Open {
            gate.ready.store(true, Ordering::Release);
        }
        tracing::info!(socket = %path.display(), readiness = ?config.readiness, "ka.sock bound");
        Ok(HookServer {
            listener,
            socket_ino,
            config,
            registry,
            handler: None,
            gate,
        })
    }

    /// Run `handler` for every registry change caused by a hook message, before replying.
    pub fn with_handler(mut self, handler: Arc<dyn ChangeHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    pub fn gate(&self) -> Arc<ReadyGate> {
        self.gate.clone()
    }

    pub fn socket_path(&self) -> &Path {
        &self.config.socket_path
    }

    /// Accept and serve connections until `shutdown` completes, then give in-flight
    /// connections `shutdown_grace` to finish and remove the socket file (if it is still ours).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let HookServer {
            listener,
            socket_ino,
            config,
            registry,
            handler,
            gate,
        } = self;
        let listener = UnixListener::from_std(listener)
            .map_err(io_err(format!("listen {}", config.socket_path.display())))?;
        let config = Arc::new(config);
        let mut tasks = JoinSet::new();
        let gate_timer = match config.readiness {
            Readiness::AwaitDetached { max_wait } => {
                let gate = gate.clone();
                Some(tokio::spawn(async move {
                    tokio::time::sleep(max_wait).await;
                    if !gate.is_ready() {
                        tracing::warn!(
                            ?max_wait,
                            "no detached replay arrived; opening the ka.sock gate anyway"
                        );
                    }
                    gate.open();
                }))
            }
            Readiness::Open => None,
        };
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "ka.sock accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let ctx = Conn {
                registry: registry.clone(),
                handler: handler.clone(),
                gate: gate.clone(),
                config: config.clone(),
            };
            tasks.spawn(async move {
                ctx.run(stream).await;
                drop(permit);
            });
            // reap finished connections so the set does not grow
            while tasks.try_join_next().is_some() {}
        }
        drop(listener);
        if let Some(t) = gate_timer {
            t.abort();
        }
        remove_own_socket(&config.socket_path, socket_ino);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
        tracing::info!("ka.sock server stopped");
        Ok(())
    }
}

/// Creates `dir` (and missing parents) with `mode`, owned by the caller (root for the daemon).
/// An existing directory is used as it is, unless another user owns it (an error: whoever owns
/// it could replace the socket) or anyone may write to it without the sticky bit (a warning).
pub fn ensure_private_dir(dir: &Path, mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    let what = || dir.display().to_string();
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            let me = nix_euid();
            let meta = if meta.file_type().is_symlink() {
                std::fs::metadata(dir).map_err(io_err(what()))?
            } else {
                meta
            };
            if meta.uid() != me {
                return Err(ServerError::Io {
                    what: what(),
                    source: io::Error::other(format!(
                        "owned by uid {}, not by this process (uid {me}); refusing to put a socket there",
                        meta.uid()
                    )),
                });
            }
            if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o7777),
                    "socket directory is writable by everyone");
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_err(what()))?;
            // exact, whatever the umask
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(what()))
        }
        Err(e) => Err(io_err(what())(e)),
    }
}

fn nix_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Removes a socket file left by a daemon that is gone. A live socket (another daemon) and a
/// file that is not a socket are errors, and are left alone.
pub fn remove_stale_socket(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path.display().to_string())(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_path_buf()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_path_buf()));
    }
    tracing::info!(socket = %path.display(), "removing stale socket");
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path.display().to_string())(e)),
    }
}

fn remove_own_socket(path: &Path, ino: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino) {
        let _ = std::fs::remove_file(path);
    }
}

struct Conn {
    registry: Arc<Registry>,
    handler: Option<Arc<dyn ChangeHandler>>,
    gate: Arc<ReadyGate>,
    config: Arc<ServerConfig>,
}

impl Conn {
    async fn run(&self, mut stream: UnixStream) {
        let peer = stream.peer_cred().ok();
        let (peer_pid, peer_uid) = (
            peer.and_then(|c| c.pid()).unwrap_or(-1),
            peer.map(|c| c.uid()).unwrap_or(u32::MAX),
        );
        let mut decoder = Decoder::new(self.config.max_message_bytes);
        let mut detached_session = false;
        let mut buf = vec![0u8; 8192];
        'conn: loop {
            let n =
                match tokio::time::timeout(self.config.idle_timeout, stream.read(&mut buf)).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, peer_pid, "ka.sock read failed");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(peer_pid, "ka.sock connection idle; closing");
                        break;
                    }
                };
            decoder.push(&buf[..n]);
            while let Some(msg) = decoder.next_message() {
                let (reply, fatal) = match msg {
                    Ok(req) => {
                        detached_session |= req.detached;
                        let peer = Peer {
                            pid: peer.and_then(|c| c.pid()),
                            uid: peer.map(|c| c.uid()),
                        };
                        (self.handle(req, peer).await, false)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, peer_pid, peer_uid, "rejected ka.sock message");
                        (Reply::Err, e.is_fatal())
                    }
                };
                if let Err(e) = stream.write_all(reply.as_bytes()).await {
                    tracing::debug!(error = %e, peer_pid, "ka.sock reply failed");
                    break 'conn;
                }
                if fatal {
                    break 'conn;
                }
            }
        }
        if detached_session {
            // upstream: the deferred store of `ready` when the detached connection closes
            self.gate.open();
        }
    }

    async fn handle(&self, req: HookRequest, peer: Peer) -> Reply {
        if let Err(refusal) = verify::check(&self.registry, &req, peer, self.config.trusted_uid) {
            tracing::warn!("{refusal}");
            if let Some(h) = &self.handler {
                h.on_refused(&refusal).await;
            }
            return Reply::Err;
        }
        let source = if req.detached {
            Source::Detached
        } else if !self.gate.is_ready() {
            tracing::debug!(container = %req.container.container_id, "ka.sock gate closed; answering err");
            return Reply::Err;
        } else {
            Source::Hook
        };
        match self.registry.apply(&req, source) {
            Ok(change) => {
                if let (Some(change), Some(handler)) = (change, &self.handler) {
                    handler.on_change(&change).await;
                }
                Reply::Ok
            }
            Err(e) => {
                tracing::warn!(error = %e, "rejected ka.sock message");
                Reply::Err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::procfs::fake::FakeProc;
    use crate::protocol::Container;

    struct Harness {
        _dir: tempfile::TempDir,
        path: PathBuf,
        registry: Arc<Registry>,
        proc: Arc<FakeProc>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), ServerError>>,
        gate: Arc<ReadyGate>,
    }

    impl Harness {
        async fn start(readiness: Readiness) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("run/kubearmor/ka.sock");
            let proc = Arc::new(FakeProc::default());
            let registry = Arc::new(Registry::new(proc.clone()));
            let server = HookServer::bind(
                ServerConfig {
                    readiness,
                    trusted_uid: nix_euid(),
                    shutdown_grace: Duration::from_millis(100),
                    ..ServerConfig::with_socket(&path)
                },
                registry.clone(),
            )
            .unwrap();
            let gate = server.gate();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(server.serve(async move {
                let _ = rx.await;
            }));
            Harness {
                _dir: dir,
                path,
                registry,
                proc,
                stop: Some(tx),
                task,
                gate,
            }
        }

        async fn stop(mut self) -> tempfile::TempDir {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(());
            }
            (&mut self.task).await.unwrap().unwrap();
            assert!(!self.path.exists(), "socket removed on shutdown");
            self._dir
        }
    }

    async fn send(stream: &mut UnixStream, bytes: &[u8]) -> Vec<u8> {
        stream.write_all(bytes).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn create(id: &str, pid: u32) -> Vec<u8> {
        HookRequest::create(Container {
            container_id: id.into(),
            pid,
            ..Container::default()
        })
        .to_bytes()
        .unwrap()
    }

    #[tokio::test]
    async fn socket_setup_modes_and_stale_socket() {
        use std::os::unix::fs::PermissionsExt;
        let h = Harness::start(Readiness::Open).await;
        let mode = std::fs::metadata(&h.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(h.path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o750);
        // a second server on a live socket is refused
        let err =
            HookServer::bind(ServerConfig::with_socket(&h.path), h.registry.clone()).unwrap_err();
        assert!(matches!(err, ServerError::InUse(_)), "{err}");
        let path = h.path.clone();
        let registry = h.registry.clone();
        let _dir = h.stop().await;
        // a stale socket file (nobody listening) is replaced
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        drop(HookServer::bind(ServerConfig::with_socket(&path), registry.clone()).unwrap());
        // a regular file is never removed
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, b"data").unwrap();
        let err = HookServer::bind(ServerConfig::with_socket(&path), registry).unwrap_err();
        assert!(matches!(err, ServerError::NotASocket(_)), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[tokio::test]
    async fn create_and_delete_round_trip() {
        let h = Harness::start(Readiness::Open).await;
        h.proc.add(10, "/c1", 101, 1, 2);
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        assert_eq!(send(&mut s, &create("c1", 10)).await, b"ok");
        assert_eq!(h.registry.by_cgroup_id(101).unwrap().id, "c1");
        // same connection, next message: a delete while it runs is refused (a forgery), once
        // it stopped it is accepted
        let del = HookRequest::delete("c1").to_bytes().unwrap();
        assert_eq!(send(&mut s, &del).await, b"err");
        assert_eq!(h.registry.len(), 1);
        h.proc.kill(10);
        assert_eq!(send(&mut s, &del).await, b"ok");
        assert!(h.registry.is_empty());
        h.stop().await;
    }

    #[tokio::test]
    async fn malformed_messages_get_err_and_change_nothing() {
        let h = Harness::start(Readiness::Open).await;
        h.proc.add(10, "/c1", 101, 1, 2);
        // schema errors keep the connection
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        assert_eq!(
            send(
                &mut s,
                br#"{"operation":9,"container":{"containerID":"x"}}"#
            )
            .await,
            b"err"
        );
        assert_eq!(
            send(&mut s, br#"{"operation":0,"container":{"containerID":""}}"#).await,
            b"err"
        );
        assert_eq!(
            send(
                &mut s,
                br#"{"operation":0,"container":{"containerID":"x","pid":"1"}}"#
            )
            .await,
            b"err"
        );
        assert_eq!(send(&mut s, &create("c1", 10)).await, b"ok");
        assert_eq!(h.registry.len(), 1);
        // syntax errors close the connection after err
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        assert_eq!(send(&mut s, b"{\"operation\":0,,,}").await, b"err");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // garbage, then a valid message in the same write: not processed
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        let mut bytes = b"garbage".to_vec();
        bytes.extend(create("c2", 10));
        assert_eq!(send(&mut s, &bytes).await, b"err");
        // oversized
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        let mut big = b"{\"container\":{\"labels\":\"".to_vec();
        big.extend(vec![b'a'; MAX_MESSAGE_BYTES + 10]);
        s.write_all(&big).await.unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"err");
        let ids: Vec<String> = h.registry.snapshot().iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, ["c1"]);
        h.stop().await;
    }

    #[tokio::test]
    async fn coalesced_messages_get_one_reply_each() {
        let h = Harness::start(Readiness::Open).await;
        h.proc.add(10, "/a", 1, 1, 1);
        h.proc.add(11, "/b", 2, 2, 2);
        let mut s = UnixStream::connect(&h.path).await.unwrap();
        let mut bytes = create("a", 10);
        bytes.extend(create("b", 11));
        s.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"okok");
        assert_eq!(h.registry.len(), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn upstream_readiness_gate() {
        let h = Harness::start(Readiness::AwaitDetached {
            max_wait: Duration::from_secs(3600),
        })
        .await;
        h.proc.add(10, "/a", 1, 1, 1);
        h.proc.add(11, "/b", 2, 2, 2);
        let mut hook = UnixStream::connect(&h.path).await.unwrap();
        // not ready: err, nothing registered
        assert_eq!(send(&mut hook, &create("a", 10)).await, b"err");
        assert!(h.registry.is_empty());
        // a detached replay is accepted while closed
        let mut replay = UnixStream::connect(&h.path).await.unwrap();
        let mut msg = HookRequest::create(Container {
            container_id: "b".into(),
            pid: 11,
            ..Container::default()
        });
        msg.detached = true;
        assert_eq!(send(&mut replay, &msg.to_bytes().unwrap()).await, b"ok");
        assert_eq!(
            h.registry.by_container_id("b").unwrap().source,
            Source::Detached
        );
        assert!(!h.gate.is_ready());
        // closing the detached session opens the gate
        drop(replay);
        tokio::time::timeout(Duration::from_secs(5), h.gate.wait())
            .await
            .unwrap();
        assert_eq!(send(&mut hook, &create("a", 10)).await, b"ok");
        assert_eq!(h.registry.len(), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn gate_opens_after_max_wait() {
        let h = Harness::start(Readiness::AwaitDetached {
            max_wait: Duration::from_millis(50),
        })
        .await;
        tokio::time::timeout(Duration::from_secs(5), h.gate.wait())
            .await
            .unwrap();
        h.stop().await;
    }

    #[tokio::test]
    async fn handler_runs_before_the_reply() {
        struct Hold(tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);
        impl ChangeHandler for Hold {
            fn on_change<'a>(&'a self, _: &'a Change) -> HandlerFuture<'a> {
                Box::pin(async move {
                    if let Some(rx) = self.0.lock().await.take() {
                        let _ = rx.await;
                    }
                })
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ka.sock");
        let proc = Arc::new(FakeProc::default());
        proc.add(10, "/a", 1, 1, 1);
        let registry = Arc::new(Registry::new(proc));
        let (release, held) = tokio::sync::oneshot::channel();
        let server = HookServer::bind(ServerConfig::with_socket(&path), registry.clone())
            .unwrap()
            .with_handler(Arc::new(Hold(tokio::sync::Mutex::new(Some(held)))));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(&create("a", 10)).await.unwrap();
        let mut buf = [0u8; 8];
        // no reply while the handler holds it, but the registry already has the container
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
                .await
                .is_err()
        );
        assert!(registry.by_cgroup_id(1).is_some());
        release.send(()).unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ok");
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
