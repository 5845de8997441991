//! [`ClusterNode`] as the router's `cluster` link.

use troupe_agents::router::ClusterPeers;
use troupe_inference::backend::{BoxFuture, GenerateRequest, GenerationStream};

use crate::ClusterNode;

impl ClusterPeers for ClusterNode {
    fn serves(&self, model: &str) -> BoxFuture<Option<String>> {
        let node = self.clone();
        let model = model.to_owned();
        Box::pin(async move {
            node.peers()
                .await
                .into_iter()
                .find(|peer| peer.models.contains(&model))
                .map(|peer| peer.node)
        })
    }

    fn context_length(&self, model: &str) -> BoxFuture<Option<u32>> {
        let node = self.clone();
        let model = model.to_owned();
        Box::pin(async move { ClusterNode::context_length(&node, &model).await })
    }

    fn generate(
        &self,
        model: &str,
        request: GenerateRequest,
    ) -> BoxFuture<Result<GenerationStream, String>> {
        let node = self.clone();
        let model = model.to_owned();
        Box::pin(async move {
            ClusterNode::generate(&node, &model, request)
                .await
                .map_err(|error| error.to_string())
        })
    }
}
