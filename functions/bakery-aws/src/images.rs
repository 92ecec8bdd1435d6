//! Our own AMIs as EC2 describes them.

use crate::{send, BakeError};
use aws_sdk_ec2::types::Image;

/// One AMI of this account, or None when EC2 does not know it (deregistered, or not ours).
pub async fn describe_own(ec2: &aws_sdk_ec2::Client, image_id: &str) -> Result<Option<Image>, BakeError> {
    let out = send("DescribeImages", || {
        ec2.describe_images().image_ids(image_id).owners("self").send()
    })
    .await;
    match out {
        Err(BakeError::NotFound(_)) => Ok(None),
        other => Ok(other?.images.and_then(|i| i.into_iter().next())),
    }
}

/// The EBS snapshots behind an AMI.
pub fn snapshot_ids(image: &Image) -> Vec<String> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
        .collect()
}
