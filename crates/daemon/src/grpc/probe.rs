//! `policy.ProbeService/getProbeData` (runtime spec §2.4).

use std::sync::Arc;

use kubearmor_containers::Registry;
use kubearmor_proto::policy::ProbeResponse;
use kubearmor_proto::probe::probe_service_server::ProbeService;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::planes::LiveEnforcement;
use crate::store::PolicyStore;

pub struct ProbeSvc {
    config: Arc<Config>,
    store: Arc<PolicyStore>,
    registry: Arc<Registry>,
    enforcement: Arc<LiveEnforcement>,
}

impl ProbeSvc {
    pub fn new(
        config: Arc<Config>,
        store: Arc<PolicyStore>,
        registry: Arc<Registry>,
        enforcement: Arc<LiveEnforcement>,
    ) -> Self {
        Self {
            config,
            store,
            registry,
            enforcement,
        }
    }
}

#[tonic::async_trait]
impl ProbeService for ProbeSvc {
    async fn get_probe_data(
        &self,
        _request: Request<()>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let snap = self.store.snapshot();
        Ok(Response::new(crate::probe::probe_response(
            &self.config,
            &snap,
            &self.registry.snapshot(),
            &self.enforcement.now(),
        )))
    }
}
