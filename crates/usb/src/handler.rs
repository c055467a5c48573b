//! [`UsbHandler`]: the uevent listener thread plus the [`Engine`] behind a mutex.
//!
//! One plain thread reads the uevent socket and decides each event at once (sysfs attribute
//! writes are in-kernel and quick); policy updates from the daemon take the same mutex, so a
//! decision never sees half a policy change. Events go to the [`EventSink`] after the mutex
//! is released.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::engine::{bump, Engine, EngineOptions, Stats, StatsSnapshot};
use crate::event::DeviceEvent;
use crate::listener::{Received, UeventSocket, DEFAULT_RECEIVE_BUFFER, RECV_BUFFER};
use crate::policy::DevicePolicy;
use crate::sysfs::{DirSysfs, Sysfs};
use crate::uevent::{self, Parsed};

/// Where device events go. Called on the listener thread (or on the thread calling
/// [`UsbHandler::update_policy`]) without any lock held; it must not block for long (push into
/// a channel). Any `Fn(DeviceEvent) + Send + Sync` closure is a sink.
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: DeviceEvent);
}

impl<F: Fn(DeviceEvent) + Send + Sync + 'static> EventSink for F {
    fn emit(&self, event: DeviceEvent) {
        self(event)
    }
}

/// Handler configuration.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// The sysfs mount (`/sys`); tests point it at a fake tree.
    pub sysfs_root: PathBuf,
    /// The state file the escape hatch reads; `None` disables it (then a killed daemon's
    /// `authorized_default=0` cannot be restored automatically).
    pub state_file: Option<PathBuf>,
    /// Hold new devices unauthorized until decided whenever a rule can block.
    pub race_free: bool,
    /// Accept uevents from userspace senders. Tests only (feature `test-hooks`): lets any
    /// root process forge events.
    #[cfg(feature = "test-hooks")]
    pub allow_userspace_senders: bool,
    /// Requested socket receive buffer in bytes.
    pub receive_buffer: usize,
}

/// Default state file.
pub const DEFAULT_STATE_FILE: &str = "/run/kubearmor/usb-handler.state";

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            sysfs_root: PathBuf::from("/sys"),
            state_file: Some(PathBuf::from(DEFAULT_STATE_FILE)),
            race_free: true,
            #[cfg(feature = "test-hooks")]
            allow_userspace_senders: false,
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
        }
    }
}

/// Whether the daemon should start the handler: KubeArmor starts it when both
/// `enableUSBDeviceHandler` and `enableKubeArmorHostPolicy` are true.
pub fn wanted(enable_usb_device_handler: bool, enable_kubearmor_host_policy: bool) -> bool {
    enable_usb_device_handler && enable_kubearmor_host_policy
}

#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    #[error("cannot open the kernel uevent socket (NETLINK_KOBJECT_UEVENT): {0}")]
    Socket(#[source] io::Error),
    #[error("USB sysfs not found at {path}: {source}")]
    NoSysfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the USB handler thread: {0}")]
    Thread(#[source] io::Error),
    #[error("the USB handler thread panicked")]
    Panicked,
}

struct Shared {
    engine: Mutex<Engine<Arc<dyn Sysfs>>>,
    sink: Box<dyn EventSink>,
    stats: Arc<Stats>,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine<Arc<dyn Sysfs>>> {
        // A panic inside the engine leaves consistent-enough state (sets of names); keep going.
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, events: Vec<DeviceEvent>) {
        for e in events {
            self.sink.emit(e);
        }
    }
}

/// The running USB device handler.
pub struct UsbHandler {
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    receive_buffer: usize,
}

impl UsbHandler {
    /// Starts on the sysfs at `config.sysfs_root`: opens the uevent socket (in the calling
    /// thread's network namespace), evaluates connected devices, then listens.
    pub fn start(
        config: HandlerConfig,
        policy: DevicePolicy,
        sink: impl EventSink,
    ) -> Result<Self, UsbError> {
        let devices = config.sysfs_root.join("bus/usb/devices");
        if let Err(source) = std::fs::metadata(&devices) {
            return Err(UsbError::NoSysfs {
                path: devices,
                source,
            });
        }
        let sysfs = Arc::new(DirSysfs::new(&config.sysfs_root));
        Self::start_with_sysfs(config, sysfs, policy, sink)
    }

    /// As [`UsbHandler::start`] with any [`Sysfs`] (a recording wrapper, an in-memory fake).
    pub fn start_with_sysfs(
        config: HandlerConfig,
        sysfs: Arc<dyn Sysfs>,
        policy: DevicePolicy,
        sink: impl EventSink,
    ) -> Result<Self, UsbError> {
        // Open the socket first: a device plugged during the start-up scan is then seen too.
        #[cfg_attr(not(feature = "test-hooks"), allow(unused_mut))]
        let mut socket = UeventSocket::open(config.receive_buffer).map_err(UsbError::Socket)?;
        #[cfg(feature = "test-hooks")]
        {
            socket.allow_userspace(config.allow_userspace_senders);
            if config.allow_userspace_senders {
                tracing::warn!("USB handler: accepting uevents from userspace senders (test mode)");
            }
        }
        let receive_buffer = socket.receive_buffer;
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| UsbError::Thread(io::Error::from_raw_os_error(e as i32)))?,
        );
        let stats = Arc::new(Stats::default());
        let opts = EngineOptions {
            race_free: config.race_free,
            state_file: config.state_file.clone(),
            sysfs_root: config.sysfs_root.clone(),
        };
        let (engine, events) = Engine::start(sysfs, policy, opts, stats.clone());
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            sink: Box::new(sink),
            stats,
        });
        shared.emit(events);
        let thread = {
            let shared = shared.clone();
            let wake = wake.clone();
            std::thread::Builder::new()
                .name("usb-uevents".into())
                .spawn(move || listen(&socket, &wake, &shared))
                .map_err(UsbError::Thread)?
        };
        tracing::info!(
            "USB handler started (sysfs {}, receive buffer {receive_buffer} bytes)",
            config.sysfs_root.display()
        );
        Ok(Self {
            shared,
            wake,
            thread: Some(thread),
            receive_buffer,
        })
    }

    /// Applies a new policy and re-evaluates connected devices; done when this returns.
    pub fn update_policy(&self, policy: DevicePolicy) {
        let mut events = Vec::new();
        self.shared.engine().set_policy(policy, &mut events);
        self.shared.emit(events);
    }

    /// Re-evaluates connected devices against the current policy (changes only).
    pub fn rescan(&self) {
        let mut events = Vec::new();
        self.shared.engine().rescan(
            crate::event::Trigger::PolicyChange,
            &Default::default(),
            &mut events,
        );
        self.shared.emit(events);
    }

    /// Whether new devices currently arrive unauthorized until decided.
    pub fn is_holding(&self) -> bool {
        self.shared.engine().is_holding()
    }

    /// Nodes currently kept deauthorized.
    pub fn blocked(&self) -> Vec<String> {
        self.shared.engine().blocked().map(str::to_string).collect()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The receive buffer the kernel granted.
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    /// Stops listening, restores `authorized_default`, re-authorizes the devices the handler
    /// kept unauthorized, and removes the state file.
    pub fn stop(mut self) -> Result<(), UsbError> {
        self.shutdown(true)
    }

    /// Stops listening but leaves everything as it is: buses held, blocked devices blocked,
    /// the state file in place, exactly as if the daemon had been killed. A handler started
    /// later (the restarted daemon) adopts that state, so a restart has no window in which new
    /// devices are authorized by default. Use [`UsbHandler::stop`] when USB handling is being
    /// turned off.
    pub fn detach(mut self) -> Result<(), UsbError> {
        self.shutdown(false)
    }

    fn shutdown(&mut self, release: bool) -> Result<(), UsbError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.wake.write(1);
        let joined = thread.join();
        if release {
            let mut events = Vec::new();
            self.shared.engine().release(&mut events);
            self.shared.emit(events);
            tracing::info!("USB handler stopped; USB buses and blocked devices given back");
        } else {
            tracing::info!("USB handler detached; USB buses stay held until the next start");
        }
        joined.map_err(|_| UsbError::Panicked)
    }
}

impl Drop for UsbHandler {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(true) {
            tracing::error!("USB handler: {e}");
        }
    }
}

fn listen(socket: &UeventSocket, wake: &EventFd, shared: &Shared) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let mut fds = [
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("USB handler: poll: {e}; listener stops");
                return;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        // Drain everything queued before polling again.
        loop {
            match socket.recv(&mut buf) {
                Ok(Received::WouldBlock) => break,
                Ok(Received::Message { len, .. }) => {
                    let received = Instant::now();
                    bump(&shared.stats.received);
                    handle(&buf[..len.min(buf.len())], received, shared);
                }
                Ok(Received::RejectedSender { sender }) => {
                    bump(&shared.stats.received);
                    bump(&shared.stats.rejected_sender);
                    tracing::debug!(
                        "USB handler: ignoring a uevent from userspace (nl_pid {sender})"
                    );
                }
                Ok(Received::Truncated { .. }) => {
                    bump(&shared.stats.received);
                    bump(&shared.stats.malformed);
                    tracing::warn!(
                        "USB handler: dropping a uevent longer than {RECV_BUFFER} bytes"
                    );
                }
                Ok(Received::Overflow) => {
                    tracing::warn!(
                        "USB handler: uevent queue overflowed (ENOBUFS); re-scanning sysfs"
                    );
                    let mut events = Vec::new();
                    shared.engine().on_overflow(&mut events);
                    shared.emit(events);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    tracing::error!("USB handler: recvmsg: {e}");
                    break;
                }
            }
        }
    }
}

fn handle(msg: &[u8], received: Instant, shared: &Shared) {
    let parsed = match uevent::parse(msg) {
        Ok(p) => p,
        Err(e) => {
            bump(&shared.stats.malformed);
            tracing::warn!("USB handler: malformed uevent: {e}");
            return;
        }
    };
    let mut events = Vec::new();
    match parsed {
        Parsed::Ignored(_) => bump(&shared.stats.ignored),
        Parsed::RootHub(u) => shared.engine().on_root_hub(&u),
        Parsed::Usb(u) => shared.engine().on_uevent(&u, received, &mut events),
    }
    shared.emit(events);
}
