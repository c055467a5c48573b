//! The USB device handler (kubearmor-usb), driven by the host's device rules.

use std::path::PathBuf;

use kubearmor_usb::{to_alert, DevicePolicy, HandlerConfig, HostContext, UsbHandler};

use super::{Plane, World};
use crate::pipeline::{Event, Pipeline};
use crate::planes::PlaneStatus;

pub struct UsbPlane {
    handler: Option<UsbHandler>,
}

impl UsbPlane {
    /// Starts the handler on `sysfs_root`, with the host rules of `world`.
    pub fn start(
        sysfs_root: PathBuf,
        world: &World,
        host: HostContext,
        pipeline: Pipeline,
    ) -> Result<Self, String> {
        let config = HandlerConfig {
            sysfs_root,
            ..HandlerConfig::default()
        };
        let handler = UsbHandler::start(
            config,
            DevicePolicy::from_rule_set(world.host.clone()),
            move |ev: kubearmor_usb::DeviceEvent| {
                if let Some(alert) = to_alert(&ev, &host) {
                    pipeline.emit(Event::new(alert));
                }
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            handler: Some(handler),
        })
    }
}

impl Plane for UsbPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "usb",
            enforcer: kubearmor_proto::values::enforcer::USB_DEVICE_HANDLER,
            families: vec!["Device"],
        }
    }

    fn apply(&mut self, world: &World) {
        if let Some(h) = &self.handler {
            h.update_policy(DevicePolicy::from_rule_set(world.host.clone()));
        }
    }

    fn stop(&mut self) {
        if let Some(h) = self.handler.take() {
            if let Err(e) = h.stop() {
                tracing::error!("usb handler: {e}");
            }
        }
    }
}
