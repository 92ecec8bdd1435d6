//! Our own AMIs as EC2 describes them.

use crate::{send, BakeError};
use aws_sdk_ec2::types::{Filter, Image};

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

/// This account's images matching `filter`, every page.
pub async fn own_matching(ec2: &aws_sdk_ec2::Client, filter: Filter) -> Result<Vec<Image>, BakeError> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = send("DescribeImages", || {
            ec2.describe_images()
                .owners("self")
                .filters(filter.clone())
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        all.extend(page.images().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// The value of the image's tag `key`.
pub fn tag<'i>(image: &'i Image, key: &str) -> Option<&'i str> {
    image
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}
