//! `policy.PolicyService`: containerPolicy, hostPolicy, networkPolicy (runtime spec §2.3).
//! The work (validate, write and fsync the policy file, swap the rule set) is the store's; this
//! only moves it off the async runtime and logs the outcome.

use std::sync::Arc;

use kubearmor_proto::policy::policy_service_server::PolicyService;
use kubearmor_proto::policy::{Policy, PolicyStatus, Response as PolicyResponse};
use tonic::{Request, Response, Status};

use super::auth::Authorizer;
use crate::store::{ChangeOutcome, Channel, PolicyStore};

pub struct PolicySvc {
    store: Arc<PolicyStore>,
    auth: Authorizer,
}

impl PolicySvc {
    pub fn new(store: Arc<PolicyStore>, auth: Authorizer) -> Self {
        Self { store, auth }
    }

    async fn apply(
        &self,
        channel: Channel,
        request: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        let caller = self.auth.authorize_change(&request, channel_rpc(channel))?;
        tracing::debug!(%caller, rpc = channel_rpc(channel), "policy change authorized");
        let bytes = request.into_inner().policy;
        let store = self.store.clone();
        let out = tokio::task::spawn_blocking(move || store.apply(channel, &bytes))
            .await
            .unwrap_or_else(|e| ChangeOutcome {
                status: PolicyStatus::Failure,
                detail: format!("policy change failed: {e}"),
            });
        log(&out);
        Ok(Response::new(PolicyResponse {
            status: out.status as i32,
        }))
    }
}

fn channel_rpc(channel: Channel) -> &'static str {
    match channel {
        Channel::Container => "containerPolicy",
        Channel::Host => "hostPolicy",
    }
}

fn log(out: &ChangeOutcome) {
    match out.status {
        PolicyStatus::Applied | PolicyStatus::Modified | PolicyStatus::Deleted => {
            tracing::info!(status = out.status.as_str_name(), "{}", out.detail);
        }
        PolicyStatus::NotExist | PolicyStatus::NotEnabled | PolicyStatus::Invalid => {
            tracing::warn!(status = out.status.as_str_name(), "{}", out.detail);
        }
        PolicyStatus::Failure => {
            tracing::error!(status = out.status.as_str_name(), "{}", out.detail)
        }
    }
}

#[tonic::async_trait]
impl PolicyService for PolicySvc {
    async fn container_policy(
        &self,
        request: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.apply(Channel::Container, request).await
    }

    async fn host_policy(
        &self,
        request: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.apply(Channel::Host, request).await
    }

    async fn network_policy(
        &self,
        request: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.auth.authorize_change(&request, "networkPolicy")?;
        let out = ChangeOutcome {
            status: PolicyStatus::NotEnabled,
            detail:
                "networkPolicy: refused: KubeArmorNetworkPolicy is not supported by kubearmor-rs"
                    .into(),
        };
        log(&out);
        Ok(Response::new(PolicyResponse {
            status: out.status as i32,
        }))
    }
}
