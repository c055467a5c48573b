//! `state_agent.StateAgent` (runtime spec §6): WatchState streams inventory changes, GetState
//! sends one snapshot and ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kubearmor_proto::state_agent::state_agent_server::StateAgent;
use kubearmor_proto::state_agent::{StateEvent, StateEvents};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::grpc::log::EventStream;
use crate::pipeline::Subscription;
use crate::state::StateHub;

pub struct StateSvc {
    hub: Arc<StateHub>,
}

impl StateSvc {
    pub fn new(hub: Arc<StateHub>) -> Self {
        Self { hub }
    }
}

struct Watch {
    sub: Subscription<StateEvent>,
}

impl Stream for Watch {
    type Item = Result<StateEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.sub
            .poll_recv(cx)
            .map(|o| o.map(|e| Ok(Arc::unwrap_or_clone(e))))
    }
}

#[tonic::async_trait]
impl StateAgent for StateSvc {
    type WatchStateStream = EventStream<StateEvent>;

    async fn watch_state(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        Ok(Response::new(Box::pin(Watch {
            sub: self.hub.subscribe(),
        })))
    }

    type GetStateStream = EventStream<StateEvents>;

    async fn get_state(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::GetStateStream>, Status> {
        let snapshot = self.hub.snapshot();
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(snapshot)))))
    }
}
