//! Enforcement: the planes and the world they enforce.
//!
//! The [`Enforcer`] rebuilds the [`World`] (host rules plus every registered container's rules)
//! whenever the policy store or the container registry changes, and hands it to each
//! [`Plane`]. Planes only enforce: every decision comes from `kubearmor-policy`, and every
//! event they see goes back through the same decision function for attribution.

pub mod alert;
pub mod fanotify;
pub mod lsm;
pub mod network;
pub mod procinfo;
pub mod rootfs;
pub mod usb;
pub mod world;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use kubearmor_containers::Registry;

use crate::planes::PlaneStatus;
use crate::store::PolicyStore;
pub use world::World;

/// One enforcement mechanism.
pub trait Plane: Send {
    /// What it enforces, for the startup log, `karmor probe` and metrics.
    fn status(&self) -> PlaneStatus;
    /// Makes the plane enforce `world`. Errors are the plane's to log; a failed apply leaves
    /// the previous rules in force.
    fn apply(&mut self, world: &World);
    /// Called every [`TICK`] with the world in force, for planes whose kernel state depends on
    /// more than the world (the network plane re-identifies `fromSource` files, which package
    /// upgrades replace). Cheap when nothing changed.
    fn tick(&mut self, _world: &World) {}
    /// Called every [`SUPERVISE`]: a plane that stopped enforcing (stalled and aborted,
    /// crashed) says so through [`Plane::status`] and restarts itself.
    fn supervise(&mut self, _world: &World) {}
    /// Stops watching; what stays enforced after this is the plane's documented behaviour.
    fn stop(&mut self) {}
}

pub struct Enforcer {
    store: Arc<PolicyStore>,
    registry: Arc<Registry>,
    planes: Mutex<Vec<Box<dyn Plane>>>,
    world: ArcSwap<World>,
}

impl Enforcer {
    pub fn new(store: Arc<PolicyStore>, registry: Arc<Registry>) -> Arc<Self> {
        let world = World::build(&store.snapshot(), &registry.snapshot());
        Arc::new(Self {
            store,
            registry,
            planes: Mutex::new(Vec::new()),
            world: ArcSwap::from_pointee(world),
        })
    }

    /// Adds a plane and applies the current world to it.
    pub fn add(&self, mut plane: Box<dyn Plane>) {
        plane.apply(&self.world.load());
        if let Ok(mut planes) = self.planes.lock() {
            planes.push(plane);
        }
    }

    pub fn statuses(&self) -> Vec<PlaneStatus> {
        self.planes
            .lock()
            .map(|p| p.iter().map(|p| p.status()).collect())
            .unwrap_or_default()
    }

    /// Rebuilds the world from the current policies and containers and applies it to every
    /// plane. Blocking (planes make syscalls); refreshes are serialised.
    pub fn refresh(&self) {
        let Ok(mut planes) = self.planes.lock() else {
            return;
        };
        let world = Arc::new(World::build(
            &self.store.snapshot(),
            &self.registry.snapshot(),
        ));
        self.world.store(world.clone());
        for p in planes.iter_mut() {
            p.apply(&world);
        }
    }

    /// Gives every plane its periodic [`Plane::tick`].
    pub fn tick(&self) {
        let Ok(mut planes) = self.planes.lock() else {
            return;
        };
        let world = self.world.load_full();
        for p in planes.iter_mut() {
            p.tick(&world);
        }
    }

    /// Gives every plane its [`Plane::supervise`].
    pub fn supervise(&self) {
        let Ok(mut planes) = self.planes.lock() else {
            return;
        };
        let world = self.world.load_full();
        for p in planes.iter_mut() {
            p.supervise(&world);
        }
    }

    /// The world in force, for attributing events.
    pub fn world(&self) -> Arc<World> {
        self.world.load_full()
    }

    pub fn stop(&self) {
        if let Ok(mut planes) = self.planes.lock() {
            for p in planes.iter_mut() {
                p.stop();
            }
        }
    }
}

/// How often planes get [`Plane::tick`].
pub const TICK: std::time::Duration = std::time::Duration::from_secs(10);
/// How often planes are checked for being down (and restarted).
pub const SUPERVISE: std::time::Duration = std::time::Duration::from_secs(1);

/// Refreshes on every policy swap and registry change until shutdown, and ticks the planes.
pub async fn follow_changes(
    enforcer: Arc<Enforcer>,
    mut policies: tokio::sync::watch::Receiver<u64>,
    registry: Arc<Registry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut sub = registry.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut supervise = tokio::time::interval(SUPERVISE);
    supervise.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = supervise.tick() => {
                let e = enforcer.clone();
                let _ = tokio::task::spawn_blocking(move || e.supervise()).await;
                continue;
            }
            _ = tick.tick() => {
                let e = enforcer.clone();
                let _ = tokio::task::spawn_blocking(move || e.tick()).await;
                continue;
            }
            changed = policies.changed() => if changed.is_err() { return },
            change = sub.changes.recv() => match change {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
        let e = enforcer.clone();
        let _ = tokio::task::spawn_blocking(move || e.refresh()).await;
    }
}

/// Applies a hook's registration to the planes before the hook is answered, so a container's
/// rules are in force before its first instruction.
pub struct RefreshOnHook {
    pub enforcer: Arc<Enforcer>,
    /// Where refused (forged) hook messages are reported.
    pub pipeline: crate::pipeline::Pipeline,
}

/// The `SystemEvent` alert for a refused ka.sock message: Operation `ContainerHook`, Resource
/// the container id, Data what was tried, Result `Permission denied`, the peer's pid and uid.
pub fn hook_refusal_alert(
    r: &kubearmor_containers::verify::Refusal,
) -> kubearmor_proto::feeder::Alert {
    use kubearmor_containers::Operation;
    kubearmor_proto::feeder::Alert {
        r#type: kubearmor_proto::values::event_type::SYSTEM_EVENT.to_string(),
        operation: "ContainerHook".to_string(),
        resource: r.container_id.clone(),
        data: format!(
            "operation={} reason={}",
            match r.operation {
                Operation::Create => "create",
                Operation::Delete => "delete",
            },
            r.reason
        ),
        action: "Block".to_string(),
        result: kubearmor_proto::values::result::PERMISSION_DENIED.to_string(),
        enforcer: "kubearmor-hook-socket".to_string(),
        host_pid: r.peer.pid.unwrap_or(0),
        uid: r.peer.uid.map_or(-1, |u| u as i32),
        message: r.to_string(),
        ..Default::default()
    }
}

impl kubearmor_containers::server::ChangeHandler for RefreshOnHook {
    fn on_refused<'a>(
        &'a self,
        refusal: &'a kubearmor_containers::verify::Refusal,
    ) -> kubearmor_containers::server::HandlerFuture<'a> {
        self.pipeline
            .emit(crate::pipeline::Event::new(hook_refusal_alert(refusal)));
        Box::pin(async {})
    }

    fn on_change<'a>(
        &'a self,
        _change: &'a kubearmor_containers::Change,
    ) -> kubearmor_containers::server::HandlerFuture<'a> {
        let e = self.enforcer.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || e.refresh()).await;
        })
    }
}
