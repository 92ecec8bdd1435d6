//! EC2 Image Builder's own SNS notification. Its `semver` packs the four version parts into
//! one number wider than u64, and `dateCreated` is like "Jul 28, 2022 1:13:45 AM" (UTC).

use crate::ids::{AccountId, AmiId, Region};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuilderMessage {
    pub arn: String,
    pub semver: Semver,
    pub state: ImageState,
    #[serde(default)]
    pub source_pipeline_arn: Option<String>,
    pub date_created: ImageBuilderDate,
    #[serde(default)]
    pub output_resources: OutputResources,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageState {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OutputResources {
    #[serde(default)]
    pub amis: Vec<OutputAmi>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputAmi {
    pub region: Region,
    pub image: AmiId,
    #[serde(default)]
    pub account_id: Option<AccountId>,
}

/// Image Builder's packed semantic version, kept whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semver(pub u128);

impl<'de> Deserialize<'de> for Semver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Semver;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Semver, E> {
                Ok(Semver(v.into()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Semver, E> {
                Ok(Semver(v))
            }
        }
        // Straight from the JSON text: through f64 (serde_json's `Value`) the low digits would be lost.
        d.deserialize_u128(V)
    }
}

/// `dateCreated` as Image Builder writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageBuilderDate(pub DateTime<Utc>);

const DATE_FORMAT: &str = "%b %d, %Y %I:%M:%S %p";

impl<'de> Deserialize<'de> for ImageBuilderDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDateTime::parse_from_str(&s, DATE_FORMAT)
            .map(|t| ImageBuilderDate(t.and_utc()))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected a date like \"Jul 28, 2022 1:13:45 AM\", found {}",
                    crate::ids::echo(&s)
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_wider_than_u64_is_kept_whole() {
        let s: Semver = serde_json::from_str("1237940039285380274899124227").unwrap();
        assert_eq!(s.0, 1_237_940_039_285_380_274_899_124_227);
        assert!(s.0 > u128::from(u64::MAX));
        assert!(serde_json::from_str::<Semver>("-1").is_err());
        assert!(serde_json::from_str::<Semver>("1.5").is_err());
    }

    #[test]
    fn image_builder_dates() {
        let d: ImageBuilderDate = serde_json::from_str("\"Jul 28, 2022 1:13:45 AM\"").unwrap();
        assert_eq!(d.0.to_rfc3339(), "2022-07-28T01:13:45+00:00");
        let d: ImageBuilderDate = serde_json::from_str("\"Dec 1, 2022 11:59:59 PM\"").unwrap();
        assert_eq!(d.0.to_rfc3339(), "2022-12-01T23:59:59+00:00");
        assert!(serde_json::from_str::<ImageBuilderDate>("\"2022-07-28T01:13:45Z\"").is_err());
    }
}
