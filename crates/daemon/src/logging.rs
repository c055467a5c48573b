//! Daemon logs: `tracing` to stderr (stdout belongs to `logPath: stdout`), level `info`, or
//! `debug` with the `debug` key; `RUST_LOG` overrides. In debug mode log lines are also
//! streamed to `WatchMessages` subscribers as KubeArmor `Message`s.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::{Arc, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::pipeline::Pipeline;

/// Where log lines go once the pipeline exists.
#[derive(Clone, Default)]
pub struct MessageSink {
    pipeline: Arc<OnceLock<Pipeline>>,
}

impl MessageSink {
    pub fn attach(&self, pipeline: Pipeline) {
        let _ = self.pipeline.set(pipeline);
    }
}

/// Installs the global subscriber. Call once, early.
pub fn init(debug: bool) -> MessageSink {
    let sink = MessageSink::default();
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our crates at the chosen level (the container registry logs upstream's "Detected a
        // container" lines); dependencies (h2, tower...) at warn.
        EnvFilter::new(format!(
            "warn,kubearmor={default},kubearmor_daemon={default},kubearmor_containers={default}"
        ))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let result = if debug {
        registry
            .with(MessageLayer { sink: sink.clone() })
            .try_init()
    } else {
        registry.try_init()
    };
    if let Err(e) = result {
        eprintln!("kubearmor: logging already initialised: {e}");
    }
    sink
}

struct MessageLayer {
    sink: MessageSink,
}

impl<S: Subscriber> Layer<S> for MessageLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(pipeline) = self.sink.pipeline.get() else {
            return;
        };
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            _ => "DEBUG",
        };
        let mut v = TextVisitor::default();
        event.record(&mut v);
        pipeline.message(level, &format!("{}{}", v.message, v.fields));
    }
}

#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl Visit for TextVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}
