//! `feeder.LogService`: HealthCheck and the three event streams (runtime spec §2.2).
//!
//! Filters: WatchAlerts accepts `all` or `policy`, WatchLogs `all` or `system`; any other value
//! ends the stream at once with OK and no items. There is no server-side filtering: every
//! accepted subscriber gets every event (karmor filters client-side). WatchMessages ignores its
//! filter and streams only in `debug` mode.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kubearmor_proto::feeder::log_service_server::LogService;
use kubearmor_proto::feeder::{Alert, Log, Message, NonceMessage, ReplyMessage, RequestMessage};
use kubearmor_proto::values::filter;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::pipeline::{Pipeline, Subscription};

pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct LogSvc {
    pipeline: Pipeline,
}

impl LogSvc {
    pub fn new(pipeline: Pipeline) -> Self {
        Self { pipeline }
    }
}

/// A subscription as a gRPC response stream. Dropping it (client gone) unsubscribes.
struct SubscriptionStream<T> {
    sub: Subscription<T>,
}

impl<T: Clone + Send + Sync + 'static> Stream for SubscriptionStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.sub
            .poll_recv(cx)
            .map(|o| o.map(|item| Ok(Arc::unwrap_or_clone(item))))
    }
}

fn stream<T: Clone + Send + Sync + 'static>(sub: Subscription<T>) -> EventStream<T> {
    Box::pin(SubscriptionStream { sub })
}

fn empty<T: Send + 'static>() -> EventStream<T> {
    Box::pin(tokio_stream::empty())
}

fn peer<T>(r: &Request<T>) -> String {
    r.remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tonic::async_trait]
impl LogService for LogSvc {
    async fn health_check(
        &self,
        request: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        Ok(Response::new(ReplyMessage {
            retval: request.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = EventStream<Message>;

    async fn watch_messages(
        &self,
        request: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        tracing::debug!(peer = %peer(&request), "WatchMessages subscriber");
        Ok(Response::new(stream(self.pipeline.subscribe_messages())))
    }

    type WatchAlertsStream = EventStream<Alert>;

    async fn watch_alerts(
        &self,
        request: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let who = peer(&request);
        let f = request.into_inner().filter;
        if f != filter::ALL && f != filter::POLICY {
            tracing::info!(peer = %who, filter = %f, "WatchAlerts: filter is not all or policy; stream ended");
            return Ok(Response::new(empty()));
        }
        tracing::info!(peer = %who, filter = %f, "WatchAlerts subscriber");
        Ok(Response::new(stream(self.pipeline.subscribe_alerts())))
    }

    type WatchLogsStream = EventStream<Log>;

    async fn watch_logs(
        &self,
        request: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        let who = peer(&request);
        let f = request.into_inner().filter;
        if f != filter::ALL && f != filter::SYSTEM {
            tracing::info!(peer = %who, filter = %f, "WatchLogs: filter is not all or system; stream ended");
            return Ok(Response::new(empty()));
        }
        tracing::info!(peer = %who, filter = %f, "WatchLogs subscriber");
        Ok(Response::new(stream(self.pipeline.subscribe_logs())))
    }
}
