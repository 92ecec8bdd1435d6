//! Validated AWS identifiers. Everything that names an AMI, an account, a region or an ARN
//! goes through these, so a bad value is refused where it enters, with a message that says why.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it; the error says what was expected.
            pub fn parse(s: &str) -> Result<Self, String> {
                $check(s).map(|()| Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// An AMI ID: `ami-` and 8 or 17 lowercase hex digits. Never a name: choosing an AMI by name alone is the whoAMI attack.
    AmiId,
    check_ami_id
);
string_id!(
    /// A 12-digit AWS account ID.
    AccountId,
    check_account_id
);
string_id!(
    /// An AWS region code such as `eu-west-1` or `us-gov-west-1`.
    Region,
    check_region
);

/// Longest value we echo back in an error message; hostile input can be megabytes.
const ECHO_LIMIT: usize = 160;

/// Quotes a value for an error message, cut to a readable length.
pub fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_LIMIT {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(ECHO_LIMIT).collect();
        format!("{cut:?}…")
    }
}

/// "an object", "a string", ...: how an error names what it found instead.
pub(crate) fn kind_of(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_ami_id(s: &str) -> Result<(), String> {
    match s.strip_prefix("ami-") {
        Some(hex) if (hex.len() == 8 || hex.len() == 17) && is_lower_hex(hex) => Ok(()),
        _ => Err(format!(
            "expected an AMI ID (ami- and 8 or 17 hex digits), found {}; Bakery never resolves an AMI by name",
            echo(s)
        )),
    }
}

fn check_account_id(s: &str) -> Result<(), String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("expected a 12-digit account ID, found {}", echo(s)))
    }
}

fn check_region(s: &str) -> Result<(), String> {
    // <area>-<direction>-<n>, with an optional partition infix: us-gov-west-1, cn-north-1, us-isob-east-1.
    let parts: Vec<&str> = s.split('-').collect();
    let alpha = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let ok = (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && alpha(parts[0])
        && parts[1..parts.len() - 1].iter().all(|p| alpha(p))
        && parts[parts.len() - 1].len() <= 2
        && !parts[parts.len() - 1].is_empty()
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!("expected a region code like eu-west-1, found {}", echo(s)))
    }
}

/// A parsed ARN: `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Result<Self, String> {
        let mut it = s.splitn(6, ':');
        let mut next = || it.next().unwrap_or_default();
        let (arn, partition, service, region, account, resource) = (next(), next(), next(), next(), next(), next());
        let partition_ok = matches!(partition, "aws" | "aws-cn" | "aws-us-gov") || partition.starts_with("aws-iso");
        if arn != "arn" || !partition_ok || service.is_empty() || resource.is_empty() {
            return Err(format!("expected an ARN, found {}", echo(s)));
        }
        if !region.is_empty() {
            check_region(region).map_err(|_| format!("bad region in ARN {}", echo(s)))?;
        }
        if !account.is_empty() {
            check_account_id(account).map_err(|_| format!("bad account in ARN {}", echo(s)))?;
        }
        Ok(Self {
            partition,
            service,
            region,
            account,
            resource,
        })
    }

    /// Parses and checks the service and the resource type (`type/...`; empty type = plain name).
    pub fn parse_kind(s: &'a str, service: &str, resource_type: &str, what: &str) -> Result<Self, String> {
        let arn = Self::parse(s).map_err(|_| format!("not {what}: {}", echo(s)))?;
        let typed = if resource_type.is_empty() {
            !arn.resource.contains('/') && !arn.resource.contains(':')
        } else {
            arn.resource
                .strip_prefix(resource_type)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.is_empty())
        };
        if arn.service != service || !typed {
            return Err(format!("not {what}: {}", echo(s)));
        }
        Ok(arn)
    }

    /// The part of the resource after its type: `image-pipeline/web` → `web`.
    pub fn resource_name(&self) -> &'a str {
        self.resource.split_once('/').map_or(self.resource, |(_, n)| n)
    }
}

/// The name of an image pipeline from its ARN (`…:image-pipeline/web` → `web`), as the bake
/// policy's parameter name and the notification use it; the input itself when it is no ARN.
pub fn pipeline_name(pipeline_arn: &str) -> &str {
    Arn::parse(pipeline_arn).map_or(pipeline_arn, |a| a.resource_name())
}

/// An SNS topic ARN (regional, with an account).
pub fn check_topic_arn(s: &str) -> Result<(), String> {
    let arn = Arn::parse_kind(s, "sns", "", "an SNS topic ARN")?;
    if arn.region.is_empty() || arn.account.is_empty() {
        return Err(format!("not an SNS topic ARN: {}", echo(s)));
    }
    Ok(())
}

/// An Image Builder image pipeline ARN.
pub fn check_pipeline_arn(s: &str) -> Result<(), String> {
    Arn::parse_kind(
        s,
        "imagebuilder",
        "image-pipeline",
        "an Image Builder image pipeline ARN",
    )
    .map(|_| ())
}

/// A KMS key usable by CopyImage in `region`: a key ARN or an alias ARN in that region.
pub fn check_kms_key_arn(s: &str, region: Option<&str>) -> Result<(), String> {
    let arn = Arn::parse(s).map_err(|_| format!("not a KMS key ARN: {}", echo(s)))?;
    let kind_ok = arn.service == "kms"
        && ["key/", "alias/"]
            .iter()
            .any(|p| arn.resource.strip_prefix(p).is_some_and(|r| !r.is_empty()))
        && !arn.region.is_empty()
        && !arn.account.is_empty();
    if !kind_ok {
        return Err(format!("not a KMS key ARN: {}", echo(s)));
    }
    match region {
        Some(r) if r != arn.region => Err(format!(
            "the key is in {} but the copy goes to {r}; a KMS key is regional",
            arn.region
        )),
        _ => Ok(()),
    }
}

/// An SSM parameter name, as Parameter Store names one (letters, digits, `_ . - /`).
pub fn check_parameter_name(s: &str) -> Result<(), String> {
    let chars_ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b));
    if s.is_empty() || s.len() > 2048 || !chars_ok || s.ends_with('/') || s.contains("//") {
        return Err(format!(
            "not an SSM parameter name (letters, digits, _ . - /): {}",
            echo(s)
        ));
    }
    if s.contains('/') && !s.starts_with('/') {
        return Err(format!("a hierarchical parameter name must start with /: {}", echo(s)));
    }
    Ok(())
}

/// A parameter name Bakery may write: PutParameter refuses names that begin with aws or ssm.
pub fn check_writable_parameter_name(s: &str) -> Result<(), String> {
    check_parameter_name(s)?;
    let lower = s.trim_start_matches('/').to_ascii_lowercase();
    if lower.starts_with("aws") || lower.starts_with("ssm") {
        return Err(format!(
            "parameter names beginning with aws or ssm are reserved: {}",
            echo(s)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_ids() {
        assert!(AmiId::parse("ami-0abcdef1234567890").is_ok());
        assert!(AmiId::parse("ami-12345678").is_ok());
        for bad in [
            "",
            "ami-",
            "ami-0ABCDEF1234567890",
            "soe-al2023-2026.11",
            "ami-0abcdef123456789",
            "img-12345678",
        ] {
            let err = AmiId::parse(bad).unwrap_err();
            assert!(err.contains("never resolves an AMI by name"), "{bad}: {err}");
        }
    }

    #[test]
    fn accounts_and_regions() {
        assert!(AccountId::parse("111122223333").is_ok());
        assert!(AccountId::parse("11112222333").is_err());
        assert!(AccountId::parse("11112222333x").is_err());
        for ok in ["eu-west-1", "us-gov-west-1", "ap-southeast-5", "cn-north-1"] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "eu",
            "eu-west",
            "EU-west-1",
            "eu-west-1a",
            "eu-west-123",
            "e-west-1",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arns() {
        let arn = Arn::parse("arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web").unwrap();
        assert_eq!(arn.resource_name(), "web");
        assert_eq!(
            pipeline_name("arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web"),
            "web"
        );
        assert_eq!(pipeline_name("not-an-arn"), "not-an-arn");
        assert!(check_pipeline_arn("arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/web").is_ok());
        assert!(check_pipeline_arn("arn:aws:imagebuilder:us-east-1:111122223333:image-recipe/web/1.0.0").is_err());
        assert!(check_pipeline_arn("arn:aws:imagebuilder:us-east-1:111122223333:image-pipeline/").is_err());
        assert!(check_topic_arn("arn:aws:sns:us-east-1:111122223333:soe-releases").is_ok());
        assert!(check_topic_arn("arn:aws:sqs:us-east-1:111122223333:soe-releases").is_err());
        assert!(Arn::parse("arn:evil:sns:us-east-1:111122223333:t").is_err());
        assert!(Arn::parse("arn:aws:sns").is_err());
        let long = "x".repeat(1 << 20);
        assert!(
            Arn::parse(&long).unwrap_err().len() < 200,
            "hostile values are not echoed whole"
        );
    }

    #[test]
    fn kms_keys() {
        let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(check_kms_key_arn(key, Some("eu-west-1")).is_ok());
        assert!(check_kms_key_arn("arn:aws:kms:eu-west-1:111122223333:alias/ami", None).is_ok());
        assert!(check_kms_key_arn(key, Some("us-east-1"))
            .unwrap_err()
            .contains("regional"));
        assert!(check_kms_key_arn("1234abcd-12ab-34cd-56ef-1234567890ab", None)
            .unwrap_err()
            .starts_with("not a KMS key ARN"));
    }

    #[test]
    fn parameter_names() {
        assert!(check_writable_parameter_name("/bakery/web/latest").is_ok());
        assert!(check_writable_parameter_name("web-latest").is_ok());
        assert!(check_parameter_name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64").is_ok());
        for bad in ["", "bakery/web", "/bakery/web/", "/bak ery", "/a//b"] {
            assert!(check_parameter_name(bad).is_err(), "{bad}");
        }
        for reserved in ["/aws/service/x", "ssm-x", "AWS-x"] {
            assert!(
                check_writable_parameter_name(reserved)
                    .unwrap_err()
                    .contains("reserved"),
                "{reserved}"
            );
        }
    }
}
