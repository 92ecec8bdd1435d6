//! Our own AMIs as EC2 describes them.

use crate::{send, BakeError};
use aws_sdk_ec2::types::{Filter, Image, LaunchPermission, LaunchPermissionModifications, OperationType};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// EnableImageDeprecation refuses a time in the past and rounds seconds to the nearest minute:
/// a whole minute, one to two minutes ahead, is the soonest that is always valid.
pub fn deprecate_at(now: DateTime<Utc>) -> DateTime<Utc> {
    let at = now + TimeDelta::minutes(2);
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// Adds or removes (`op`) launch permissions of an image; nothing to do for none.
pub async fn change_launch_permissions(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
    permissions: Vec<LaunchPermission>,
    op: OperationType,
) -> Result<(), BakeError> {
    if permissions.is_empty() {
        return Ok(());
    }
    let builder = LaunchPermissionModifications::builder();
    let change = match op {
        OperationType::Remove => builder.set_remove(Some(permissions)),
        _ => builder.set_add(Some(permissions)),
    }
    .build();
    send("ModifyImageAttribute", || {
        ec2.modify_image_attribute()
            .image_id(image_id)
            .launch_permission(change.clone())
            .send()
    })
    .await
    .map(drop)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn deprecation_is_a_whole_minute_soon() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 59).unwrap();
        let at = deprecate_at(now);
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 11, 26, 16, 2, 0).unwrap());
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap();
        assert_eq!(deprecate_at(now), Utc.with_ymd_and_hms(2026, 11, 26, 16, 2, 0).unwrap());
        assert!(deprecate_at(now) - now >= TimeDelta::minutes(1));
    }
}
