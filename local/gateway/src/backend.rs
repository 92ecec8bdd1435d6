//! What the Image Builder emulator needs from the rest of the local AWS: AMIs made in moto's
//! EC2 (RunInstances + CreateImage, since moto's RegisterImage drops block device mappings)
//! and state-change events put on the gateway's bus.

use async_trait::async_trait;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use imagebuilder_emulator::{AmiRequest, Backend};
use std::collections::BTreeMap;
use tokio::sync::mpsc::UnboundedSender;

pub struct Ec2Backend {
    moto: String,
    account: String,
    events: UnboundedSender<serde_json::Value>,
}

impl Ec2Backend {
    pub fn new(moto: String, account: String, events: UnboundedSender<serde_json::Value>) -> Self {
        Self { moto, account, events }
    }

    async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&crate::sdk_config(&self.moto, region).await)
    }

    /// EC2 tells the account's bus of the new image (moto's images are available at once).
    async fn image_available(&self, region: &str, image_id: &str) {
        let event = crate::service_events::ami_state_change(&self.account, region, image_id, "available");
        let _ = self.events.send(event);
    }
}

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[async_trait]
impl Backend for Ec2Backend {
    async fn create_ami(&self, req: AmiRequest) -> Result<String, String> {
        let ec2 = self.ec2(&req.region).await;
        let run = ec2
            .run_instances()
            .image_id(&req.parent_image_id)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .map_err(|e| format!("RunInstances from {}: {}", req.parent_image_id, e.into_service_error()))?;
        let instance = run
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or("RunInstances returned no instance")?;
        let mut create = ec2.create_image().instance_id(instance).name(&req.name);
        if let Some(d) = &req.description {
            create = create.description(d);
        }
        if !req.tags.is_empty() {
            create = create.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Image)
                    .set_tags(Some(tags(&req.tags)))
                    .build(),
            );
        }
        let image = create
            .send()
            .await
            .map_err(|e| format!("CreateImage: {}", e.into_service_error()))?;
        // The build instance goes away, as Image Builder's does.
        let _ = ec2.terminate_instances().instance_ids(instance).send().await;
        let id = image.image_id.ok_or("CreateImage returned no image id")?;
        self.image_available(&req.region, &id).await;
        Ok(id)
    }

    async fn copy_ami(
        &self,
        source_region: &str,
        source_image_id: &str,
        dest_region: &str,
        name: &str,
        tags_to_add: BTreeMap<String, String>,
    ) -> Result<String, String> {
        let ec2 = self.ec2(dest_region).await;
        let copy = ec2
            .copy_image()
            .source_region(source_region)
            .source_image_id(source_image_id)
            .name(name)
            .send()
            .await
            .map_err(|e| format!("CopyImage to {dest_region}: {}", e.into_service_error()))?;
        let id = copy.image_id.ok_or("CopyImage returned no image id")?;
        self.image_available(dest_region, &id).await;
        if !tags_to_add.is_empty() {
            ec2.create_tags()
                .resources(&id)
                .set_tags(Some(tags(&tags_to_add)))
                .send()
                .await
                .map_err(|e| format!("CreateTags: {}", e.into_service_error()))?;
        }
        Ok(id)
    }

    async fn put_event(&self, event: serde_json::Value) {
        let _ = self.events.send(event);
    }
}
