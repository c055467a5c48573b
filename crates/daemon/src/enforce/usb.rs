//! The USB device handler (kubearmor-usb), driven by the host's device rules.

use kubearmor_usb::{to_alert, DevicePolicy, HandlerConfig, HostContext, UsbHandler};

use super::{Plane, World};
use crate::config::UsbConfig;
use crate::pipeline::{Event, Pipeline};
use crate::planes::PlaneStatus;

pub struct UsbPlane {
    handler: Option<UsbHandler>,
}

impl UsbPlane {
    /// Starts the handler with the host rules of `world`, on the sysfs at `usbSysfsRoot`, with
    /// the state file `usbStateFile` and (tests only) `usbAcceptUserspaceUevents`.
    pub fn start(
        config: &UsbConfig,
        world: &World,
        host: HostContext,
        pipeline: Pipeline,
    ) -> Result<Self, String> {
        // usbAcceptUserspaceUevents is warned about by the config log and by the handler.
        let config = handler_config(config);
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

/// The handler settings the daemon's configuration asks for.
fn handler_config(config: &UsbConfig) -> HandlerConfig {
    HandlerConfig {
        sysfs_root: config.sysfs_root.clone(),
        state_file: config.state_file.clone(),
        #[cfg(feature = "test-hooks")]
        allow_userspace_senders: config.accept_userspace_uevents,
        ..HandlerConfig::default()
    }
}

impl Plane for UsbPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "usb",
            enforcer: kubearmor_proto::values::enforcer::USB_DEVICE_HANDLER,
            families: vec!["Device"],
            open: vec![],
            down: None,
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
