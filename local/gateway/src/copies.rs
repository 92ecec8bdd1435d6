//! EC2 CopyImage as EC2 does it, where moto does not: moto makes the copy at once, available,
//! unencrypted and untagged, whatever the request says, and a retry with the same ClientToken
//! makes a second AMI. The gateway keeps, per account and region:
//! - the ClientToken's answer: the same request again gets the same image, another request
//!   with the token is `IdempotentParameterMismatch`;
//! - each copy's progress: `pending` for a while (a knob), then `available`, or `failed` when its
//!   KMS key does not exist (or is not enabled) in the target region, as EC2 fails such a copy
//!   after accepting it;
//! - its encryption (`Encrypted`, `KmsKeyId`, resolved to the key's ARN), shown in DescribeImages'
//!   block device mappings;
//! - a limit of copies in progress (a knob): one more is `ResourceLimitExceeded`;
//! - DescribeImages' eventual consistency (a knob): a new copy is missing from listings by
//!   filter for a while, so a retry that looks for its copy by tags may not find it, and only
//!   the ClientToken stands between it and a second copy.
//!
//! TagSpecifications (image and snapshot) and CopyImageTags are applied to the copy in moto.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What EC2 reports for a copy whose key it could not use (as seen on AWS: the copy is
/// accepted, then fails).
pub const KEY_FAILURE: &str = "Copy image failed with an internal error";

/// One copy the gateway made.
#[derive(Debug, Clone)]
pub struct Copy {
    pub ready_at: Instant,
    /// From when listings by filter show it.
    pub listed_at: Instant,
    /// Why it will fail, once ready.
    pub failure: Option<String>,
    /// The ARN of the key its snapshots are encrypted with.
    pub kms_key_arn: Option<String>,
}

/// The knobs: how long a copy stays pending, how many may be in progress at once, how long
/// listings by filter miss it.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub pending: Duration,
    pub concurrent_limit: Option<usize>,
    pub unlisted: Duration,
}

#[derive(Default)]
pub struct Copies {
    /// (account, region, ClientToken) → (the request's fingerprint, the copy's image id).
    tokens: HashMap<(String, String, String), (String, String)>,
    /// (region, image id) → the copy.
    images: HashMap<(String, String), (String, Copy)>,
    pub knobs: Knobs,
}

/// What a CopyImage request asks, from its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    pub source_image_id: String,
    pub source_region: String,
    pub client_token: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub copy_image_tags: bool,
    /// Resource type ("image", "snapshot") → tags.
    pub tag_specifications: BTreeMap<String, BTreeMap<String, String>>,
}

impl CopyRequest {
    pub fn from_form(form: &BTreeMap<String, String>) -> Self {
        let mut tag_specifications: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for n in 1.. {
            let Some(kind) = form.get(&format!("TagSpecification.{n}.ResourceType")) else {
                break;
            };
            let tags = tag_specifications.entry(kind.clone()).or_default();
            for m in 1.. {
                let Some(key) = form.get(&format!("TagSpecification.{n}.Tag.{m}.Key")) else {
                    break;
                };
                let value = form
                    .get(&format!("TagSpecification.{n}.Tag.{m}.Value"))
                    .cloned()
                    .unwrap_or_default();
                tags.insert(key.clone(), value);
            }
        }
        let yes = |k: &str| form.get(k).is_some_and(|v| v == "true");
        Self {
            source_image_id: form.get("SourceImageId").cloned().unwrap_or_default(),
            source_region: form.get("SourceRegion").cloned().unwrap_or_default(),
            client_token: form.get("ClientToken").cloned().filter(|t| !t.is_empty()),
            encrypted: yes("Encrypted"),
            kms_key_id: form.get("KmsKeyId").cloned().filter(|k| !k.is_empty()),
            copy_image_tags: yes("CopyImageTags"),
            tag_specifications,
        }
    }

    /// What must be equal for a ClientToken's retry to be the same request.
    fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{}|{:?}",
            self.source_image_id,
            self.source_region,
            self.encrypted,
            self.kms_key_id,
            self.copy_image_tags,
            self.tag_specifications
        )
    }
}

/// What the gateway answers before moto sees the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// A retry of a copy already made: its image id.
    Replay(String),
    /// An EC2 error: (code, message).
    Refuse(&'static str, String),
    /// A new copy: pass it to moto.
    New,
}

impl Copies {
    pub fn before(&self, account: &str, region: &str, req: &CopyRequest, now: Instant) -> Before {
        if let Some(token) = &req.client_token {
            if let Some((fingerprint, image)) = self.tokens.get(&(account.into(), region.into(), token.clone())) {
                return if *fingerprint == req.fingerprint() {
                    Before::Replay(image.clone())
                } else {
                    Before::Refuse(
                        "IdempotentParameterMismatch",
                        format!("The client token {token} was used with other parameters"),
                    )
                };
            }
        }
        if let Some(limit) = self.knobs.concurrent_limit {
            let in_progress = self
                .images
                .iter()
                .filter(|((r, _), (a, c))| r == region && a == account && c.ready_at > now)
                .count();
            if in_progress >= limit {
                return Before::Refuse(
                    "ResourceLimitExceeded",
                    format!(
                        "You have reached the limit of {limit} concurrent AMI copies in {region}. Try again later."
                    ),
                );
            }
        }
        Before::New
    }

    /// Records a copy moto made.
    pub fn made(&mut self, account: &str, region: &str, req: &CopyRequest, image_id: &str, copy: Copy) {
        if let Some(token) = &req.client_token {
            self.tokens.insert(
                (account.into(), region.into(), token.clone()),
                (req.fingerprint(), image_id.into()),
            );
        }
        self.images
            .insert((region.into(), image_id.into()), (account.into(), copy));
    }

    /// Every copy in progress completes now (a test knob).
    pub fn complete_all(&mut self, now: Instant) {
        for (_, c) in self.images.values_mut() {
            if c.ready_at > now {
                c.ready_at = now;
            }
        }
    }

    /// Every copy of `region`, by image id.
    pub fn in_region(&self, region: &str) -> HashMap<String, Copy> {
        self.images
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, image), (_, c))| (image.clone(), c.clone()))
            .collect()
    }
}

/// A DescribeImages answer with each copy as EC2 shows it now: `pending` until it is ready,
/// then `failed` (with its state reason) or `available`, and its EBS mappings encrypted with
/// its key. A `listing` (by filter, not by image id) misses copies not listed yet.
pub fn as_ec2_shows(xml: &str, copies: &HashMap<String, Copy>, now: Instant, listing: bool) -> String {
    if copies.is_empty() {
        return xml.to_owned();
    }
    let mut out = xml.to_owned();
    for item in crate::shared_images::image_items(xml) {
        let Some(copy) = crate::shared_images::field(item, "imageId").and_then(|id| copies.get(&id)) else {
            continue;
        };
        let shown = if listing && copy.listed_at > now {
            String::new()
        } else {
            shown(item, copy, now)
        };
        out = out.replacen(item, &shown, 1);
    }
    out
}

fn shown(item: &str, c: &Copy, now: Instant) -> String {
    let state = match (&c.failure, c.ready_at > now) {
        (_, true) => "pending",
        (Some(_), false) => "failed",
        (None, false) => "available",
    };
    // What was done to the copy since (DisableImage: moto's `disabled`) is moto's to show.
    let mut item = if crate::shared_images::field(item, "imageState").as_deref() == Some("available") {
        replace_element(item, "imageState", state)
    } else {
        item.to_owned()
    };
    if let (Some(reason), false) = (&c.failure, c.ready_at > now) {
        let reason_xml =
            format!("<stateReason><code>Client.InternalError</code><message>{reason}</message></stateReason>");
        item = match item.find("</imageState>") {
            Some(i) => format!(
                "{}{reason_xml}{}",
                &item[..i + "</imageState>".len()],
                &item[i + "</imageState>".len()..]
            ),
            None => item,
        };
    }
    if let Some(key) = &c.kms_key_arn {
        item = item.replace(
            "</ebs>",
            &format!("<encrypted>true</encrypted><kmsKeyId>{key}</kmsKeyId></ebs>"),
        );
    }
    item
}

fn replace_element(item: &str, name: &str, value: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    match (item.find(&open), item.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{open}{value}{}", &item[..a], &item[b..]),
        _ => item.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn request() -> CopyRequest {
        CopyRequest::from_form(&form(&[
            ("SourceImageId", "ami-1"),
            ("SourceRegion", "us-east-1"),
            ("ClientToken", "t-1"),
            ("Encrypted", "true"),
            ("KmsKeyId", "alias/ami-copies"),
            ("CopyImageTags", "true"),
            ("TagSpecification.1.ResourceType", "image"),
            ("TagSpecification.1.Tag.1.Key", "bakery:bake-id"),
            ("TagSpecification.1.Tag.1.Value", "web-1"),
            ("TagSpecification.2.ResourceType", "snapshot"),
            ("TagSpecification.2.Tag.1.Key", "bakery:bake-id"),
            ("TagSpecification.2.Tag.1.Value", "web-1"),
        ]))
    }

    fn copy(ready_in: Duration) -> Copy {
        Copy {
            ready_at: Instant::now() + ready_in,
            listed_at: Instant::now(),
            failure: None,
            kms_key_arn: Some("arn:aws:kms:eu-west-1:1:key/k".into()),
        }
    }

    #[test]
    fn the_request_is_read_whole() {
        let r = request();
        assert!(r.encrypted && r.copy_image_tags);
        assert_eq!(r.kms_key_id.as_deref(), Some("alias/ami-copies"));
        assert_eq!(r.tag_specifications["snapshot"]["bakery:bake-id"], "web-1");
        assert_eq!(r.tag_specifications.len(), 2);
    }

    #[test]
    fn a_token_gives_back_its_copy_and_refuses_other_parameters() {
        let mut c = Copies::default();
        let now = Instant::now();
        let r = request();
        assert_eq!(c.before("1", "eu-west-1", &r, now), Before::New);
        c.made("1", "eu-west-1", &r, "ami-2", copy(Duration::ZERO));
        assert_eq!(c.before("1", "eu-west-1", &r, now), Before::Replay("ami-2".into()));
        assert_eq!(
            c.before("2", "eu-west-1", &r, now),
            Before::New,
            "tokens are per account"
        );
        let mut other = r.clone();
        other.kms_key_id = None;
        assert!(matches!(
            c.before("1", "eu-west-1", &other, now),
            Before::Refuse("IdempotentParameterMismatch", _)
        ));
    }

    #[test]
    fn copies_in_progress_beyond_the_limit_are_refused() {
        let mut c = Copies::default();
        c.knobs.concurrent_limit = Some(1);
        let mut r = request();
        r.client_token = None;
        c.made("1", "eu-west-1", &r, "ami-2", copy(Duration::from_secs(60)));
        assert!(matches!(
            c.before("1", "eu-west-1", &r, Instant::now()),
            Before::Refuse("ResourceLimitExceeded", _)
        ));
        assert_eq!(c.before("1", "ap-southeast-2", &r, Instant::now()), Before::New);
    }

    #[test]
    fn describe_images_shows_progress_failure_and_encryption() {
        // moto writes the block device mappings before the image id.
        let xml = "<DescribeImagesResponse><imagesSet><item><blockDeviceMapping><item><ebs><snapshotId>snap-1</snapshotId></ebs></item>\
            </blockDeviceMapping><imageId>ami-2</imageId><imageState>available</imageState></item>\
            <item><imageId>ami-3</imageId><imageState>available</imageState></item></imagesSet></DescribeImagesResponse>";
        let mut copies = HashMap::new();
        copies.insert("ami-2".to_owned(), copy(Duration::from_secs(60)));
        let now = Instant::now();
        let shown = as_ec2_shows(xml, &copies, now, true);
        assert!(
            shown.contains("<imageId>ami-2</imageId><imageState>pending</imageState>"),
            "{shown}"
        );
        assert!(shown.contains("<snapshotId>snap-1</snapshotId><encrypted>"), "{shown}");
        assert!(shown.contains("<encrypted>true</encrypted><kmsKeyId>arn:aws:kms:eu-west-1:1:key/k</kmsKeyId></ebs>"));
        assert!(shown.contains("<imageId>ami-3</imageId><imageState>available</imageState>"));
        copies.insert(
            "ami-2".to_owned(),
            Copy {
                ready_at: now,
                listed_at: now,
                failure: Some(KEY_FAILURE.into()),
                kms_key_arn: None,
            },
        );
        let shown = as_ec2_shows(xml, &copies, now, true);
        assert!(
            shown.contains("<imageState>failed</imageState><stateReason><code>Client.InternalError</code>"),
            "{shown}"
        );
        // A ready copy disabled since is shown disabled, as moto keeps it.
        copies.insert("ami-2".to_owned(), copy(Duration::ZERO));
        let disabled = xml.replacen(
            "<imageState>available</imageState>",
            "<imageState>disabled</imageState>",
            1,
        );
        let shown = as_ec2_shows(&disabled, &copies, Instant::now(), true);
        assert!(
            shown.contains("<imageId>ami-2</imageId><imageState>disabled</imageState>"),
            "{shown}"
        );
    }

    #[test]
    fn a_new_copy_is_missing_from_listings_for_a_while() {
        let xml = "<DescribeImagesResponse><imagesSet><item><imageId>ami-2</imageId><imageState>available</imageState></item>\
            <item><imageId>ami-3</imageId><imageState>available</imageState></item></imagesSet></DescribeImagesResponse>";
        let now = Instant::now();
        let mut c = copy(Duration::ZERO);
        c.listed_at = now + Duration::from_secs(5);
        let copies = HashMap::from([("ami-2".to_owned(), c)]);
        let listed = as_ec2_shows(xml, &copies, now, true);
        assert!(!listed.contains("ami-2") && listed.contains("ami-3"), "{listed}");
        assert!(
            as_ec2_shows(xml, &copies, now, false).contains("ami-2"),
            "by id it is there"
        );
        assert!(as_ec2_shows(xml, &copies, now + Duration::from_secs(5), true).contains("ami-2"));
    }
}
